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
