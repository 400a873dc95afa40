import ArgumentParser
import Foundation
import SluiceHost

/// `sluice new-transform NAME [--lang swift|c] [--dir DIR]`: a new transform project that builds on
/// its own. It is made from plugin-template/<lang>/ plus copies of what it compiles against — the
/// ABI header, and for Swift the SDK's sources as a local target — so it needs neither a Sluice
/// checkout nor the network: `swift build` resolves no package, `make` needs only a C compiler.
struct NewTransform: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new-transform",
        abstract: "Start a new transform (Swift or C) that builds on its own.",
        discussion: """
            The templates and the SDK are found next to the sluice executable: the checkout it was \
            built in, or PREFIX/share/sluice for PREFIX/bin/sluice. --sluice-root overrides that.
            """)

    enum Language: String, ExpressibleByArgument, CaseIterable {
        case swift, c
    }

    @Argument(help: "The transform's name, as written in chains ([a-z][a-z0-9-]*).")
    var name: String

    @Option(help: "The language: swift (a SwiftPM package) or c (a Makefile).")
    var lang: Language = .swift

    @Option(help: "The folder to create (default: ./NAME). It may exist if it is empty.")
    var dir: String?

    @Option(help: "A Sluice checkout or PREFIX/share/sluice holding plugin-template/ and Sources/ (default: found from the executable).")
    var sluiceRoot: String?

    func validate() throws {
        guard name.range(of: "^[a-z][a-z0-9-]*$", options: .regularExpression) != nil else {
            throw ValidationError("the name must match [a-z][a-z0-9-]* (got '\(name)')")
        }
    }

    func run() throws {
        do {
            let resources = try SluiceResources.locate(explicitRoot: sluiceRoot)
            let destination = URL(fileURLWithPath: dir ?? name).standardizedFileURL
            let existed = try prepare(destination)
            do {
                try ProjectWriter(resources: resources, language: lang, name: name, destination: destination).write()
            } catch {
                // Leave nothing half-made: the folder was missing or empty before.
                try? FileManager.default.removeItem(at: destination)
                if existed { try? FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true) }
                throw error
            }
            print(instructions(destination))
        } catch let error as NewTransformError {
            FileHandle.standardError.write(Data("sluice new-transform: \(error.description)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// Creates the destination, refusing anything that is not a missing or empty folder (nothing of
    /// the user's is ever overwritten). Returns whether it existed.
    private func prepare(_ destination: URL) throws -> Bool {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: destination.path, isDirectory: &isFolder) {
            let entries = (try? fm.contentsOfDirectory(atPath: destination.path)) ?? []
            guard isFolder.boolValue, entries.isEmpty else {
                throw NewTransformError("\(destination.path) already exists and is not an empty folder")
            }
            return true
        }
        do {
            try fm.createDirectory(at: destination, withIntermediateDirectories: true)
        } catch {
            throw NewTransformError("cannot create \(destination.path): \(error.localizedDescription)")
        }
        return false
    }

    private func instructions(_ destination: URL) -> String {
        switch lang {
        case .swift:
            return """
                created the Swift transform \(name) in \(destination.path)
                build it:  cd \(destination.path) && swift build -c release
                plugin:    .build/release/libsluice-\(name).so (copy it into your plugin directory)
                """
        case .c:
            return """
                created the C transform \(name) in \(destination.path)
                build it:  cd \(destination.path) && make
                plugin:    libsluice-\(name).so (copy it into your plugin directory)
                """
        }
    }
}

/// Writes one project: the language's template with its placeholders filled in (in file contents
/// and in paths), then verbatim copies of the header (and the SDK for Swift).
struct ProjectWriter {
    let resources: SluiceResources
    let language: NewTransform.Language
    let name: String
    let destination: URL

    /// Placeholder → value. TYPE names Swift types and the module (RateGuard for rate-guard); IDENT
    /// is the name as a C identifier and metric name (rate_guard).
    var replacements: [(String, String)] {
        let typeName = name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        return [
            ("__TRANSFORM_NAME__", name),
            ("__TRANSFORM_TYPE__", typeName),
            ("__TRANSFORM_IDENT__", name.replacingOccurrences(of: "-", with: "_")),
            ("__SLUICE_VERSION__", Sluice.version),
        ]
    }

    func write() throws {
        let template = resources.templates.appendingPathComponent(language.rawValue)
        do {
            try copyTemplate(from: template)
            switch language {
            case .swift:
                let abi = destination.appendingPathComponent("Sources/PluginABI")
                try copy(resources.header, to: abi.appendingPathComponent("include/sluice_plugin.h"))
                // SwiftPM needs a source file in a C target; the layout checks are one, and useful.
                try copy(resources.layoutChecks, to: abi.appendingPathComponent("abi_layout_checks.c"))
                try copySwiftSources(from: resources.sdk, to: destination.appendingPathComponent("Sources/SluiceSDK"))
            case .c:
                try copy(resources.header, to: destination.appendingPathComponent("include/sluice_plugin.h"))
            }
        } catch let error as NewTransformError {
            throw error
        } catch {
            throw NewTransformError("cannot write \(destination.path): \(error.localizedDescription)")
        }
    }

    /// Every file under `template`, with placeholders replaced in its relative path and its text.
    private func copyTemplate(from template: URL) throws {
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: template, includingPropertiesForKeys: [.isDirectoryKey]) else {
            throw NewTransformError("cannot read the template \(template.path)")
        }
        let base = template.standardizedFileURL.path
        var copied = 0
        for case let file as URL in walker {
            guard (try? file.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) != true else { continue }
            let relative = String(file.standardizedFileURL.path.dropFirst(base.count + 1))
            let text = try String(contentsOf: file, encoding: .utf8)
            let target = destination.appendingPathComponent(filled(relative))
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try filled(text).write(to: target, atomically: true, encoding: .utf8)
            copied += 1
        }
        if copied == 0 { throw NewTransformError("the template \(template.path) is empty or missing") }
    }

    private func filled(_ text: String) -> String {
        replacements.reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    private func copy(_ source: URL, to target: URL) throws {
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: source, to: target)
    }

    /// The SDK's .swift files (nothing else: no build products or editor files of a checkout).
    private func copySwiftSources(from sdk: URL, to target: URL) throws {
        let files = try FileManager.default.contentsOfDirectory(at: sdk, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "swift" }
        guard !files.isEmpty else { throw NewTransformError("no Swift sources in \(sdk.path)") }
        for file in files { try copy(file, to: target.appendingPathComponent(file.lastPathComponent)) }
    }
}
