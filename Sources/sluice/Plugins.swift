import ArgumentParser
import Foundation
import Logging
import SluiceHost

/// `sluice plugins --dir DIR`: what each shared object of a plugin directory offers, or why it was refused.
struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the plugins of a directory.")

    @Option(name: .shortAndLong, help: "The plugin directory.")
    var dir: String

    func run() throws {
        Sluice.bootstrapObservability(logLevel: .warning)
        let result = PluginLoader.loadDirectory(dir)
        if let problem = result.directoryProblem {
            FileHandle.standardError.write(Data("sluice: \(problem)\n".utf8))
            throw ExitCode(2)
        }
        for p in result.loaded {
            print("\(p.name) \(p.version)  ABI \(p.abiMajor).\(p.abiMinor)  \(p.path)")
            for t in p.transforms {
                print("  transform \(t.name)  protocols: \(t.protocolNames)  \(t.description)")
                for f in t.controlFunctions {
                    print("    control \(p.name).\(f.name)(\(f.signature.text))  \(f.help)")
                }
            }
        }
        for r in result.refused {
            print("REFUSED \(r.path): \(r.reason)")
        }
        if result.loaded.isEmpty && result.refused.isEmpty {
            print("no *.so files in \(dir)")
        }
    }
}
