import ArgumentParser
import Foundation
import SluiceHost

/// `sluice new-transform NAME`: copies plugin-template/ into a new folder, ready to build.
struct NewTransform: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new-transform", abstract: "Start a new transform from plugin-template/.")

    @Argument(help: "The transform's name ([a-z0-9-]+).")
    var name: String

    @Option(help: "Where to create it (default: ./NAME).")
    var output: String?

    @Option(help: "The Sluice checkout holding plugin-template/ and the SDK (default: the current directory).")
    var sluiceRoot: String = FileManager.default.currentDirectoryPath

    func run() throws {
        guard name.range(of: "^[a-z][a-z0-9-]*$", options: .regularExpression) != nil else {
            throw ValidationError("the name must match [a-z][a-z0-9-]*")
        }
        let root = URL(fileURLWithPath: sluiceRoot).standardizedFileURL
        let template = root.appendingPathComponent("plugin-template")
        let destination = URL(fileURLWithPath: output ?? name).standardizedFileURL
        let fm = FileManager.default
        guard fm.fileExists(atPath: template.path) else {
            throw ValidationError("no plugin-template/ under \(root.path); pass --sluice-root")
        }
        guard !fm.fileExists(atPath: destination.path) else {
            throw ValidationError("\(destination.path) already exists")
        }
        let typeName = name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        let replacements = [
            "__TRANSFORM_NAME__": name, "__TRANSFORM_TYPE__": typeName,
            "__TRANSFORM_METRIC__": name.replacingOccurrences(of: "-", with: "_"), "__SLUICE_ROOT__": root.path,
        ]
        try fm.copyItem(at: template, to: destination)
        let files = fm.enumerator(at: destination, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        for file in files where !file.hasDirectoryPath {
            guard var text = try? String(contentsOf: file, encoding: .utf8) else { continue }
            for (placeholder, value) in replacements { text = text.replacingOccurrences(of: placeholder, with: value) }
            try text.write(to: file, atomically: true, encoding: .utf8)
            var renamed = file.lastPathComponent
            for (placeholder, value) in replacements { renamed = renamed.replacingOccurrences(of: placeholder, with: value) }
            if renamed != file.lastPathComponent {
                try fm.moveItem(at: file, to: file.deletingLastPathComponent().appendingPathComponent(renamed))
            }
        }
        print("created \(destination.path); build it with: (cd \(destination.path) && swift build -c release)")
    }
}
