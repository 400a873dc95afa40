import Foundation
import PluginABI

/// Opens every `*.so` of a directory as a Sluice plugin and checks it against the ABI.
///
/// Each file is first copied into the process's private plugin directory (`PrivatePluginCopies`: a
/// file of the plugin directory rewritten in place must never change code the host runs), and the
/// copy is opened with `dlopen(copy, RTLD_NOW | RTLD_LOCAL)` (an absolute path, so the host's own
/// RUNPATH is never searched); its `sluice_plugin_init` is called with the host function table,
/// and the returned descriptor is checked: magic, struct size, ABI major (and minor when the plugin
/// requires it), transform names. Loaded plugins are never closed: code may still be on a stack, and
/// Swift code cannot be unloaded.
public enum PluginLoader {
    public struct Result {
        public var loaded: [LoadedPlugin] = []
        public var refused: [RefusedPlugin] = []
        /// Why the directory itself could not be read (it does not exist, is not a directory…).
        public var directoryProblem: String?
    }

    /// Loads every *.so of `directory` (sorted by file name).
    public static func loadDirectory(_ directory: String) -> Result {
        var result = Result()
        let url = URL(fileURLWithPath: directory)
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: url.path)
        } catch {
            result.directoryProblem = describeUnreadable(directory: url.path)
            return result
        }
        for entry in entries.sorted() where entry.hasSuffix(".so") {
            let path = url.appendingPathComponent(entry).standardizedFileURL.path
            switch load(path: path) {
            case .success(let plugin):
                if let clash = result.loaded.first(where: { $0.name == plugin.name }) {
                    result.refused.append(RefusedPlugin(path: path, reason: "a plugin named '\(plugin.name)' was already loaded from \(clash.path)"))
                } else {
                    result.loaded.append(plugin)
                }
            case .failure(let refusal):
                result.refused.append(refusal)
            }
        }
        return result
    }

    /// Loads and checks one shared object.
    public static func load(path: String) -> Swift.Result<LoadedPlugin, RefusedPlugin> {
        func refuse(_ reason: String) -> Swift.Result<LoadedPlugin, RefusedPlugin> {
            .failure(RefusedPlugin(path: path, reason: reason))
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let copy: String
        do {
            copy = try PrivatePluginCopies.shared.copy(of: absolute)
        } catch let failure as PrivatePluginCopies.Failure {
            return refuse(failure.reason)
        } catch {
            return refuse("\(error)")
        }
        guard let handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL) else {
            // dlerror names the private copy; the operator knows the file by its own path.
            let message = (dlerror().map { String(cString: $0) } ?? "unknown error")
                .replacingOccurrences(of: copy, with: absolute)
            if message.contains("invalid ELF header") || message.contains("file too short")
                || message.contains("not an ELF") {
                return refuse("not a shared object (\(message))")
            }
            return refuse("dlopen failed: \(message)")
        }
        guard let symbol = dlsym(handle, SLUICE_PLUGIN_INIT_SYMBOL) else {
            return refuse("no entry symbol: \(SLUICE_PLUGIN_INIT_SYMBOL) is not exported")
        }
        let initialize = unsafeBitCast(symbol, to: sluice_plugin_init_fn.self)
        guard let descriptorPointer = PluginDescriptors.shared.descriptor(copy: copy, initialize: { initialize(HostAPI.table) }) else {
            return refuse("\(SLUICE_PLUGIN_INIT_SYMBOL) returned NULL (the plugin refused to load; see its log lines)")
        }
        return check(descriptorPointer, path: absolute, loadedFrom: copy)
    }

    /// Why a plugin directory cannot be listed, in the operator's words.
    static func describeUnreadable(directory: String) -> String {
        var status = stat()
        guard stat(directory, &status) == 0 else {
            return errno == ENOENT ? "the plugin directory \(directory) does not exist"
                                   : "cannot read the plugin directory \(directory): \(String(cString: strerror(errno)))"
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            return "the plugin directory \(directory) is not a directory"
        }
        return "cannot read the plugin directory \(directory): permission denied"
    }

    /// Validates a descriptor; reads only the fields within the struct_size the plugin declared.
    static func check(_ pointer: UnsafePointer<sluice_plugin_descriptor>, path: String, loadedFrom: String)
        -> Swift.Result<LoadedPlugin, RefusedPlugin>
    {
        func refuse(_ reason: String) -> Swift.Result<LoadedPlugin, RefusedPlugin> {
            .failure(RefusedPlugin(path: path, reason: reason))
        }
        let magic = UnsafeRawPointer(pointer).load(as: UInt32.self)
        guard magic == SLUICE_PLUGIN_MAGIC else {
            return refuse("bad magic 0x\(String(magic, radix: 16, uppercase: true)) (expected 0x\(String(SLUICE_PLUGIN_MAGIC, radix: 16, uppercase: true))): not a Sluice plugin descriptor")
        }
        let declared = Int(UnsafeRawPointer(pointer).load(fromByteOffset: 4, as: UInt32.self))
        let minimum = MemoryLayout<sluice_plugin_descriptor>.offset(of: \sluice_plugin_descriptor.transforms)!
            + MemoryLayout<UnsafeRawPointer>.size
        guard declared >= minimum else {
            return refuse("descriptor struct_size \(declared) is smaller than ABI 1.0's \(minimum)")
        }
        let d = readVersioned(pointer, declaredSize: declared)
        guard d.abi_major == UInt32(SLUICE_ABI_VERSION_MAJOR) else {
            return refuse("wrong ABI major: plugin built for ABI \(d.abi_major).\(d.abi_minor), host speaks ABI \(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR)")
        }
        if d.abi_minor > UInt32(SLUICE_ABI_VERSION_MINOR), d.flags & UInt32(SLUICE_PLUGIN_FLAG_REQUIRES_MINOR) != 0 {
            return refuse("plugin requires ABI \(d.abi_major).\(d.abi_minor), host speaks ABI \(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR)")
        }
        guard let namePointer = d.name, let name = validName(String(cString: namePointer)) else {
            return refuse("plugin name missing or not of the form [a-z0-9_-]+")
        }
        let version = d.version.map { String(cString: $0) } ?? "unknown"
        guard d.transform_count > 0, d.transform_count < 1024, let transformsPointer = d.transforms else {
            return refuse("plugin '\(name)' offers no transforms")
        }
        // The array's stride is the transform struct size the plugin was built with.
        let stride = Int(UnsafeRawPointer(transformsPointer).load(as: UInt32.self))
        let transformMinimum = MemoryLayout<sluice_transform_descriptor>.offset(of: \sluice_transform_descriptor.config_new)!
            + MemoryLayout<UnsafeRawPointer>.size
        guard stride >= transformMinimum else {
            return refuse("plugin '\(name)': transform struct_size \(stride) is smaller than ABI 1.0's \(transformMinimum)")
        }
        // Minors append a few pointers at most; a huge stride is garbage, and stepping by it would read
        // far outside the plugin's array.
        guard stride <= 4096 else {
            return refuse("plugin '\(name)': transform struct_size \(stride) is implausibly large")
        }
        var transforms: [LoadedTransform] = []
        for i in 0..<Int(d.transform_count) {
            let raw = UnsafeRawPointer(transformsPointer).advanced(by: i * stride)
            let t = readVersioned(raw.assumingMemoryBound(to: sluice_transform_descriptor.self), declaredSize: stride)
            guard let tn = t.name, let transformName = validName(String(cString: tn)) else {
                return refuse("plugin '\(name)': transform \(i) has a missing or invalid name")
            }
            guard let configNew = t.config_new else {
                return refuse("plugin '\(name)': transform '\(transformName)' has no config_new hook")
            }
            if transforms.contains(where: { $0.name == transformName }) {
                return refuse("plugin '\(name)': transform '\(transformName)' is declared twice")
            }
            var transform = LoadedTransform(
                name: transformName, description: t.description.map { String(cString: $0) } ?? "",
                protocols: t.protocols, configNew: configNew, configFree: t.config_free,
                instanceNew: t.instance_new, instanceFree: t.instance_free, onRequests: t.on_requests,
                onResponses: t.on_responses)
            switch controlFunctions(of: t) {
            case .success(let functions): transform.controlFunctions = functions
            case .failure(let problem): return refuse("plugin '\(name)': transform '\(transformName)': \(problem.description)")
            }
            transforms.append(transform)
        }
        return .success(LoadedPlugin(path: path, loadedFrom: loadedFrom, name: name, version: version, abiMajor: d.abi_major,
                                     abiMinor: d.abi_minor, transforms: transforms))
    }

    struct ControlDeclarationProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads and checks the control functions a transform declares (ABI 1.2). A transform built
    /// against an older minor has none: its fields beyond struct_size read as zero.
    static func controlFunctions(of t: sluice_transform_descriptor) -> Swift.Result<[ControlFunction], ControlDeclarationProblem> {
        func problem(_ text: String) -> Swift.Result<[ControlFunction], ControlDeclarationProblem> {
            .failure(ControlDeclarationProblem(description: text))
        }
        let count = Int(t.control_function_count)
        guard count > 0 else { return .success([]) }
        guard let array = t.control_functions else {
            return problem("control_function_count is \(count) but control_functions is NULL")
        }
        guard count <= 256 else { return problem("\(count) control functions; at most 256 are allowed") }
        let stride = Int(UnsafeRawPointer(array).load(as: UInt32.self))
        let minimum = MemoryLayout<sluice_control_function>.offset(of: \sluice_control_function.fn)! + MemoryLayout<UnsafeRawPointer>.size
        guard stride >= minimum, stride <= 4096 else {
            return problem("control function struct_size \(stride) is not plausible (ABI 1.2's is \(minimum))")
        }
        var functions: [ControlFunction] = []
        for i in 0..<count {
            let raw = UnsafeRawPointer(array).advanced(by: i * stride)
            let f = readVersioned(raw.assumingMemoryBound(to: sluice_control_function.self), declaredSize: stride)
            guard let namePointer = f.name, let name = validControlName(String(cString: namePointer)) else {
                return problem("control function \(i) has a missing or invalid name (expected [a-z0-9_]+)")
            }
            guard let fn = f.fn else { return problem("control function '\(name)' has no function pointer") }
            guard !functions.contains(where: { $0.name == name }) else {
                return problem("control function '\(name)' is declared twice")
            }
            let signature: ControlSignature
            do {
                signature = try ControlSignature.parse(f.params.map { String(cString: $0) } ?? "")
            } catch {
                return problem("control function '\(name)': cannot use its params: \(error)")
            }
            functions.append(ControlFunction(name: name, signature: signature,
                                             help: f.help.map { String(cString: $0) } ?? "",
                                             function: unsafeBitCast(fn, to: UnsafeRawPointer.self)))
        }
        return .success(functions)
    }

    static func validControlName(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 64,
              name.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == 95 })
        else { return nil }
        return name
    }

    /// Copies a versioned struct, zero-filling the fields beyond the size its writer declared.
    static func readVersioned<T>(_ pointer: UnsafePointer<T>, declaredSize: Int) -> T {
        let size = MemoryLayout<T>.size
        let storage = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<T>.alignment)
        defer { storage.deallocate() }
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        storage.copyMemory(from: pointer, byteCount: min(size, declaredSize))
        return storage.load(as: T.self)
    }

    static func validName(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 64,
              name.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 45 })
        else { return nil }
        return name
    }
}
