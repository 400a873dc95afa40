import Logging

/// The host's loggers, one per area, so a log line says where it came from.
enum HostLog {
    static let host = Logger(label: "sluice")
    static let sources = Logger(label: "sluice.source")
    static let sinks = Logger(label: "sluice.sink")
    static let plugins = Logger(label: "sluice.plugin")
    static let config = Logger(label: "sluice.config")
}
