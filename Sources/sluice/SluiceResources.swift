import Foundation

/// The files a new transform is made from: the templates, the ABI header and the Swift SDK's sources.
/// A Sluice checkout holds them at its root; an installed Sluice (PREFIX/bin/sluice) keeps the same
/// layout under PREFIX/share/sluice/.
struct SluiceResources {
    /// The folder holding plugin-template/ and Sources/.
    let root: URL

    /// What a folder must hold to be a root, relative to it.
    static let requiredPaths = ["plugin-template", "Sources/PluginABI/include/sluice_plugin.h", "Sources/SluiceSDK"]

    var templates: URL { root.appendingPathComponent("plugin-template") }
    var header: URL { root.appendingPathComponent("Sources/PluginABI/include/sluice_plugin.h") }
    var layoutChecks: URL { root.appendingPathComponent("Sources/PluginABI/abi_layout_checks.c") }
    var sdk: URL { root.appendingPathComponent("Sources/SluiceSDK") }

    /// Whether `folder` holds everything a new transform needs.
    static func isRoot(_ folder: URL) -> Bool {
        requiredPaths.allSatisfy { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
    }

    /// The root named by `explicitRoot`, or else the first found near the running executable: the
    /// checkout it was built in (walking up from .build/…/sluice) or PREFIX/share/sluice for
    /// PREFIX/bin/sluice. The error names every folder that was looked at.
    static func locate(explicitRoot: String?) throws -> SluiceResources {
        let candidates: [URL]
        if let explicitRoot {
            candidates = [URL(fileURLWithPath: explicitRoot).standardizedFileURL]
        } else {
            candidates = searchPath(from: executableURL())
        }
        if let root = candidates.first(where: isRoot) { return SluiceResources(root: root) }
        let looked = candidates.map { "  " + $0.path }.joined(separator: "\n")
        let how = explicitRoot == nil
            ? "\npass --sluice-root DIR: a Sluice checkout, or PREFIX/share/sluice as scripts/install.sh makes it" : ""
        throw NewTransformError(
            "cannot find Sluice's plugin templates and SDK (\(requiredPaths.joined(separator: ", "))) in:\n\(looked)\(how)")
    }

    /// Every ancestor of the executable's folder, each followed by its share/sluice.
    static func searchPath(from executable: URL?) -> [URL] {
        guard var folder = executable?.deletingLastPathComponent() else { return [] }
        var folders: [URL] = []
        while true {
            folders.append(folder)
            folders.append(folder.appendingPathComponent("share/sluice"))
            let parent = folder.deletingLastPathComponent().standardizedFileURL
            if parent.path == folder.path || folder.path == "/" { break }
            folder = parent
        }
        return folders
    }

    /// The running executable with every symbolic link resolved (a `sluice` linked into ~/bin
    /// still finds the checkout it was built in).
    static func executableURL() -> URL? {
        #if os(Linux)
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: target).resolvingSymlinksInPath()
        }
        #endif
        if let url = Bundle.main.executableURL { return url.resolvingSymlinksInPath() }
        let argument0 = CommandLine.arguments.first ?? ""
        guard argument0.contains("/") else { return nil }
        return URL(fileURLWithPath: argument0).standardizedFileURL.resolvingSymlinksInPath()
    }
}

/// A failure of `sluice new-transform`, printed as is.
struct NewTransformError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
