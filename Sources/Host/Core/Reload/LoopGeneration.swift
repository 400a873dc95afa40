/// The newest generation as one event loop knows it: written and read on that loop only, so a
/// connection's check "is there a newer generation?" is a plain integer compare, no lock and no
/// atomic. The registry updates it with a task on the loop when a reload switched.
final class LoopGeneration {
    private(set) var number: Int
    private(set) var current: ConfigGeneration

    init(_ generation: ConfigGeneration) {
        number = generation.number
        current = generation
    }

    /// The registry this view belongs to (nil for a fixed view), for `startSession`.
    weak var registry: GenerationRegistry?

    /// Starts a client session on `candidate` or, when that generation already ended (a reload
    /// replaced it and freed its configs before this loop learnt of the newer one), on the
    /// registry's current generation. `accepts` says whether the client can run on a generation
    /// (its source is there, its backend state allows it); nil when none it accepts is left.
    func startSession(preferring candidate: ConfigGeneration,
                      accepts: (ConfigGeneration) -> Bool = { _ in true }) -> ConfigGeneration? {
        var candidate = candidate
        while true {
            guard accepts(candidate) else { return nil }
            if candidate.sessionStarted() { return candidate }
            // Ended: a newer generation is current (the current one is never refused).
            guard let newest = registry?.current, newest !== candidate else { return nil }
            candidate = newest
        }
    }

    /// On the loop only.
    func advance(to generation: ConfigGeneration) {
        guard generation.number > number else { return }
        current = generation
        number = generation.number
    }
}
