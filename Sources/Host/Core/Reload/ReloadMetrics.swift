import Metrics

/// `sluice_config_generation` (the generation new clients take) and `sluice_config_reloads_total`
/// by result ("ok": switched, "refused": the config or a new listener was refused).
enum ReloadMetrics {
    private static let generation = Gauge(label: "sluice_config_generation")
    private static let switched = Counter(label: "sluice_config_reloads_total", dimensions: [("result", "ok")])
    private static let refused = Counter(label: "sluice_config_reloads_total", dimensions: [("result", "refused")])

    static func started(generation number: Int) {
        generation.record(number)
        // Both series exist from the start, so a dashboard's rate() sees the first reload.
        switched.increment(by: 0)
        refused.increment(by: 0)
    }

    static func reloaded(to number: Int) {
        generation.record(number)
        switched.increment()
    }

    static func reloadRefused() { refused.increment() }
}
