import NIOConcurrencyHelpers
import NIOCore

/// Whether one `cassandra` sink's backend speaks the highest protocol version Sluice does (v5),
/// as a plain value. Sluice answers a client's OPTIONS and STARTUP itself, so without this a v5
/// client of a v4-only backend (Cassandra 3.x, most clusters) would be told READY and then see
/// every request fail; with it, such a client's first frame gets the PROTOCOL_ERROR drivers
/// downgrade on (`CQLClientConnection`), and the driver reconnects in v4.
///
/// Learnt by a probe (`CQLBackendVersionProbe`: a v5 STARTUP on a connection of its own) when a
/// configuration generation starts (start-up, every reload: each has its own knowledge), and again
/// when a client opens while the last probe could not tell (the backend was unreachable or
/// answered nothing useful) and at least `retryAfter` has passed. Until a probe answered, every
/// version is allowed (as before): an unreachable backend never makes Sluice refuse a version.
/// Clients never wait for a probe and nothing here runs per request: only on a client's first frame.
struct CQLBackendVersionKnowledge: Equatable {
    enum State: Equatable {
        /// Not probed yet, or the last probe (ended at `lastProbe`) could not tell.
        case unknown(lastProbe: NIODeadline?)
        case probing
        /// The backend answered a STARTUP in `probed` with READY or AUTHENTICATE.
        case accepts
        /// The backend answered it with PROTOCOL_ERROR (an unsupported version).
        case refuses
    }

    /// What a probe learnt.
    enum Outcome: Equatable {
        case accepted
        case refused(reason: String)
        case inconclusive(reason: String)
    }

    /// The version probed: the highest Sluice speaks.
    let probed: CQLVersion
    private(set) var state: State = .unknown(lastProbe: nil)
    /// How long after an inconclusive probe a client's arrival may start another.
    static let retryAfter = TimeAmount.seconds(1)

    init(probed: CQLVersion = .v5) {
        self.probed = probed
    }

    /// A generation starts: probe now unless a probe is running or answered.
    mutating func startProbe() -> Bool {
        guard case .unknown = state else { return false }
        state = .probing
        return true
    }

    /// A client's first frame: the versions of `supported` it may open with, and whether the
    /// caller starts a probe now (nothing known, and none ran within `retryAfter`).
    mutating func clientVersions(supported: [CQLVersion], now: NIODeadline) -> (versions: [CQLVersion], probe: Bool) {
        switch state {
        case .refuses:
            return (supported.filter { $0 < probed }, false)
        case .accepts, .probing:
            return (supported, false)
        case .unknown(let last):
            guard last.map({ now - $0 >= Self.retryAfter }) ?? true else { return (supported, false) }
            state = .probing
            return (supported, true)
        }
    }

    mutating func probeAnswered(_ outcome: Outcome, now: NIODeadline) {
        switch outcome {
        case .accepted: state = .accepts
        case .refused: state = .refuses
        case .inconclusive: state = .unknown(lastProbe: now)
        }
    }
}

/// `CQLBackendVersionKnowledge` shared by the event loops of one sink's generation (a lock, taken
/// on a client's first frame and when a probe ends, never per request).
final class CQLBackendVersions: @unchecked Sendable {
    private let lock = NIOLock()
    private var knowledge = CQLBackendVersionKnowledge()

    var probed: CQLVersion { knowledge.probed }
    var state: CQLBackendVersionKnowledge.State { lock.withLock { knowledge.state } }

    func startProbe() -> Bool {
        lock.withLock { knowledge.startProbe() }
    }

    func clientVersions(supported: [CQLVersion]) -> (versions: [CQLVersion], probe: Bool) {
        lock.withLock { knowledge.clientVersions(supported: supported, now: .now()) }
    }

    func probeAnswered(_ outcome: CQLBackendVersionKnowledge.Outcome) {
        lock.withLock { knowledge.probeAnswered(outcome, now: .now()) }
    }
}
