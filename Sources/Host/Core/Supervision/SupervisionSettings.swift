/// The `supervision:` section of a config: how many worker processes serve clients and when a
/// plugin that keeps crashing them has its chain taken out of service.
///
///     supervision: { workers: 2, quarantine_after: 3, quarantine_window_ms: 60000 }
public struct SupervisionSettings {
    static let keys = ["workers", "quarantine_after", "quarantine_window_ms"]
    public static let workerRange = 1...64
    public static let defaultWorkers = 1
    public static let defaultQuarantineWindowMilliseconds = 60_000

    /// Worker processes (default 1: every per-process setting, such as `max_clients`, the request
    /// buffer budget and the metrics endpoint, means what it means without supervision).
    public var workers: Int
    /// Crashes of workers by one chain's plugin within the window after which that chain answers
    /// every request with an error instead of running the plugin (0: never; the default).
    public var quarantineAfter: Int
    public var quarantineWindowMilliseconds: Int

    public init(workers: Int? = nil, quarantineAfter: Int? = nil, quarantineWindowMilliseconds: Int? = nil) {
        self.workers = workers ?? Self.defaultWorkers
        self.quarantineAfter = quarantineAfter ?? 0
        self.quarantineWindowMilliseconds = quarantineWindowMilliseconds ?? Self.defaultQuarantineWindowMilliseconds
    }
}
