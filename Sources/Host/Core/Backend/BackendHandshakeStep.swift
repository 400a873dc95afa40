/// One request a new backend connection sends before any client request (Redis: `AUTH` with the
/// sink's credentials, `HELLO 3`), and what it means when the backend refuses it.
/// The steps are written together once the channel (and TLS) is up; the replies are awaited in order.
struct BackendHandshakeStep {
    enum Refusal: Equatable {
        /// The connect failed: the sink is backed off and the waiting requests fail (a refused AUTH).
        case failsConnect
        /// The backend's refusal is its answer to the waiting requests, as it would have been
        /// directly; the sink is not backed off (Redis refusing `HELLO 3` with `-NOAUTH`).
        case answersRequests
    }

    /// For the log and error replies ("AUTH refused (…)"). Never the request: it may hold a secret.
    let name: String
    /// The request's bytes on the wire.
    let request: [UInt8]
    let refusal: Refusal
}

/// What the backend's reply to a handshake step means, as the protocol reads it.
enum BackendHandshakeVerdict: Equatable {
    /// Accepted: on to the next step (or established after the last).
    case accepted
    /// Accepted, and the next step is not needed (CQL: READY to STARTUP where credentials were
    /// ready to be sent). Only for handshakes that are not pipelined.
    case acceptedSkippingNext
    /// Accepted; the next step is sent with this request instead of its own (CQL: DSE's
    /// authenticator first wants the SASL mechanism's name). Only for handshakes that are not pipelined.
    case acceptedSendingNext([UInt8])
    /// The step goes on: send this request and await another reply to the same step (a SASL
    /// challenge answered).
    case respond([UInt8])
    /// Refused, in the backend's own words.
    case refused(String)
}
