import ArgumentParser
import SluiceHost

@main
struct SluiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An L7 proxy for Redis whose transforms are plugins loaded through one C ABI.",
        version: Sluice.version,
        subcommands: [Run.self, Check.self, Plugins.self, NewTransform.self, Ctl.self],
        defaultSubcommand: Run.self
    )
}
