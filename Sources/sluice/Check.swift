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

    func run() throws {
        Sluice.bootstrapObservability(logLevel: .warning)
        do {
            let prepared = try Sluice.prepare(configPath: config)
            print(prepared.summary)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
