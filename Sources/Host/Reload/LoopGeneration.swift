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

    /// On the loop only.
    func advance(to generation: ConfigGeneration) {
        guard generation.number > number else { return }
        current = generation
        number = generation.number
    }
}
