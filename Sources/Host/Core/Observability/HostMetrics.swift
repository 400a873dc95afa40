import Metrics
import NIOConcurrencyHelpers

/// Counters and gauges of one Redis source (labelled with its listen address).
struct SourceMetrics {
    /// The source's listen address as configured, its label here and its name for plugins.
    let listen: String
    private let requestsCounter: Counter
    private let connections: Gauge
    private let protocolErrors: Counter
    private let refused: Counter
    private let authFailures: Counter
    private let closedForReplies: Counter
    private let closedForTimeout: Counter
    private let closedForHandshake: Counter
    private let budgetPauses: Counter
    private let openConnections = ManagedCounter()

    init(listen: String) {
        self.listen = listen
        requestsCounter = Counter(label: "sluice_requests_total", dimensions: [("source", listen)])
        connections = Gauge(label: "sluice_client_connections", dimensions: [("source", listen)])
        protocolErrors = Counter(label: "sluice_protocol_errors_total", dimensions: [("source", listen)])
        refused = Counter(label: "sluice_refused_connections_total", dimensions: [("source", listen)])
        authFailures = Counter(label: "sluice_client_auth_failures_total", dimensions: [("source", listen)])
        closedForReplies = Counter(label: "sluice_clients_closed_total", dimensions: [("source", listen), ("reason", "reply_buffer")])
        closedForTimeout = Counter(label: "sluice_clients_closed_total", dimensions: [("source", listen), ("reason", "request_timeout")])
        closedForHandshake = Counter(label: "sluice_clients_closed_total", dimensions: [("source", listen), ("reason", "tls_handshake_timeout")])
        budgetPauses = Counter(label: "sluice_request_budget_pauses_total", dimensions: [("source", listen)])
    }

    func requests(_ n: Int) { requestsCounter.increment(by: n) }
    func protocolError() { protocolErrors.increment() }
    /// A client turned away at max_clients.
    func clientRefused() { refused.increment() }
    /// A client's AUTH (or HELLO AUTH) with a wrong user name or password.
    func authFailed() { authFailures.increment() }
    /// A client closed for holding more than `reply_buffer_hard_bytes` of unread replies.
    func closedForReplyBuffer() { closedForReplies.increment() }
    /// A client closed for not finishing a request (or its TLS handshake) within `request_timeout_ms`.
    func closedForDeadline(tlsHandshake: Bool) { (tlsHandshake ? closedForHandshake : closedForTimeout).increment() }
    /// A client stopped being read because the source's request-buffer budget was spent.
    func pausedForRequestBudget() { budgetPauses.increment() }
    /// Counts a client in and returns how many are connected now (this one included).
    func connectionOpened() -> Int {
        let open = openConnections.add(1)
        connections.record(open)
        return open
    }
    func connectionClosed() { connections.record(openConnections.add(-1)) }
}

/// Counters of one sink (labelled with its name), shared by all its connections.
struct SinkMetrics {
    private let connectFailures: Counter
    private let failed: Counter
    private let outOfStepReplies: Counter

    static func forSink(_ name: String) -> SinkMetrics { SinkMetrics(name: name) }

    private init(name: String) {
        connectFailures = Counter(label: "sluice_backend_connect_failures_total", dimensions: [("sink", name)])
        failed = Counter(label: "sluice_backend_failed_batches_total", dimensions: [("sink", name)])
        outOfStepReplies = Counter(label: "sluice_backend_out_of_step_resets_total", dimensions: [("sink", name)])
    }

    func connectFailed() { connectFailures.increment() }
    func failedBatches(_ n: Int) { failed.increment(by: n) }
    /// A backend connection was reset because a reply could not answer the request waiting for it.
    func outOfStep() { outOfStepReplies.increment() }
}

/// Counters of one transform at one chain position.
struct TransformMetrics {
    private let failures: Counter
    private let errorReturns: Counter
    private let misuses: Counter

    init(plugin: String, transform: String, label: String) {
        let dims = [("plugin", plugin), ("transform", transform), ("step", label)]
        failures = Counter(label: "sluice_transform_failed_calls_total", dimensions: dims)
        errorReturns = Counter(label: "sluice_transform_error_returns_total", dimensions: dims)
        misuses = Counter(label: "sluice_transform_abi_misuse_total", dimensions: dims)
    }

    /// The plugin failed a call (call_fail), or the host failed it on the plugin's behalf.
    func failed() { failures.increment() }
    /// A hook returned a status other than SLUICE_OK without completing its call.
    func errorReturned() { errorReturns.increment() }
    /// The plugin broke an ABI rule (completed a call twice, gave away a lent batch…).
    func misused() { misuses.increment() }
}

/// A counter a plugin created with metric_counter (`sluice_metric*`); updated from any thread.
final class PluginCounter {
    let counter: Counter
    init(name: String, plugin: String, step: String) {
        counter = Counter(label: "sluice_plugin_\(name)_total", dimensions: [("plugin", plugin), ("step", step)])
    }
}

/// A lock-protected integer for gauges that are adjusted from several event loops.
final class ManagedCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NIOLock()
    func add(_ delta: Int) -> Int {
        lock.withLock {
            value += delta
            return value
        }
    }
}
