import ArgumentParser
import Foundation
import Logging
import SluiceHost

/// `sluice check --config FILE`: everything `run` does before listening.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config file and its plugins without listening.")

    @Option(name: .shortAndLong, help: "The YAML config file.")
    var config: String

    @Flag(help: "Do not try to bind the listen addresses (to check a config whose ports a running Sluice holds).")
    var noBind = false

    func run() throws {
        Sluice.bootstrapObservability(logLevel: .warning)
        do {
            let prepared = try Sluice.prepare(configPath: config, tryBinding: !noBind)
            print(prepared.summary)
            prepared.release()
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
