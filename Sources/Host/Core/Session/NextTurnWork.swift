/// The work a client session put off to the next event-loop turn and has not run yet, as a value:
/// each kind is queued at most once, however often it is asked for within a turn. The session asks
/// (`request`), enqueues a task on its event loop only when told to, and reports when that task
/// runs (`taskRuns`), after which the next request queues another.
///
/// Work is put off rather than done at once when it must not happen inside the completion or hook
/// on the stack (moving to a newer generation frees plugin instances; a run of held-back requests
/// must not nest in the run under way), or when one go at the end of the turn serves many events
/// (a flush for every reply that came back in it). Tasks run in the order queued, so a flush queued
/// before a close still sends the replies it covers.
struct NextTurnWork: Equatable {
    enum Task: UInt8 {
        /// Run the requests the in-flight limit held back (`ClientReadingStateMachine.HeldRunAction.runNextTurn`).
        case heldRun = 1
        /// Flush the replies written as they came (replies not in request order).
        case flush = 2
        /// Move the client to the newest configuration generation.
        case move = 4
    }

    /// The tasks queued and not run yet (a bit per `Task`).
    private(set) var queued: UInt8 = 0

    func isQueued(_ task: Task) -> Bool { queued & task.rawValue != 0 }

    /// `task` is wanted on the next turn. Returns whether the session must enqueue it (false: one is
    /// queued already and will do it).
    @inline(__always)
    mutating func request(_ task: Task) -> Bool {
        guard queued & task.rawValue == 0 else { return false }
        queued |= task.rawValue
        return true
    }

    /// The queued `task` runs now.
    @inline(__always)
    mutating func taskRuns(_ task: Task) {
        queued &= ~task.rawValue
    }
}
