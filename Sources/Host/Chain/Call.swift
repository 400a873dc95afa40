import NIOCore
import PluginABI

/// One `on_requests` invocation of one transform: the continuation a plugin holds as `sluice_call*`.
///
/// States: `.requested` (the plugin must forward, respond or fail) → `.forwarded` (waiting for the
/// rest of the chain) → `.awaitingRespond` (on_responses ran; the plugin must respond or fail) →
/// `.done`. The plugin holds one retain on the call from the moment it first sees it until it
/// completes it, so a pointer it keeps across hooks stays valid, and a second completion is refused
/// instead of touching freed memory.
final class Call: ResponseReceiver {
    enum State { case requested, forwarded, awaitingRespond, done }

    /// Strong: an outcome can arrive after the client closed (a backend reply on a shared
    /// connection, a failure queued by closing), and must find the chain to learn it is closed.
    let chain: ChainInstance
    let position: Int
    let step: TransformStep
    let instance: UnsafeMutableRawPointer?
    /// The requests and the receiver of the current call; nil while a completed call waits for
    /// reuse (so it holds nothing of its last batch, at the cost of a release rather than a swap).
    private var currentRequests: Batch?
    private var currentReceiver: ResponseReceiver?
    var requests: Batch { currentRequests! }
    /// How many requests the call started with: the plugin may remove some before forwarding, but
    /// it must answer every one of them.
    private(set) var requestCount: Int
    var receiver: ResponseReceiver { currentReceiver! }
    private(set) var state: State = .requested
    /// The plugin's own pointer for this call (call_set_data); never touched by the host.
    var pluginData: UnsafeMutableRawPointer?
    private var responses: Batch?
    private var heldByPlugin = false
    /// Links of the chain instance's list of calls the plugin holds (see `ChainInstance.held`):
    /// the list keeps them alive, and closing the connection abandons whatever is still on it.
    var nextHeld: Call?
    unowned(unsafe) var previousHeld: Call?
    /// True while call_forward runs, so responses that come back synchronously are deferred.
    private var forwarding = false
    /// Requests the plugin answered itself (call_answer); the rest go on, and the host merges.
    private var localAnswers = LocalAnswers()

    init(chain: ChainInstance, position: Int, step: TransformStep, instance: UnsafeMutableRawPointer?,
         requests: Batch, receiver: ResponseReceiver, forwarded: Bool = false) {
        self.chain = chain
        self.position = position
        self.step = step
        self.instance = instance
        currentRequests = requests
        requestCount = requests.count
        currentReceiver = receiver
        if forwarded { state = .forwarded }
    }

    /// Makes a call the plugin completed inside its hook (and never kept) a new call of the same
    /// step: the ABI ends a call's lifetime at its completion, so the chain instance reuses the
    /// object instead of allocating one per batch and step.
    func restart(requests: Batch, receiver: ResponseReceiver) {
        currentRequests = requests
        requestCount = requests.count
        currentReceiver = receiver
        state = .requested
        pluginData = nil
        localAnswers.removeAll()
    }

    /// Drops what a completed call still references (the batch may hold a large read), so a call
    /// kept for reuse holds nothing of its last batch.
    func vacate() {
        currentRequests = nil
        currentReceiver = nil
    }

    /// Whether the call may be reused: completed inside its hook, and kept by nothing else.
    var isReusable: Bool { state == .done && !heldByPlugin }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer) -> Call {
        Unmanaged<Call>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// Hands the request batch to the plugin's on_requests hook.
    func start() {
        guard let onRequests = step.onRequests else { return }
        requests.isLent = true
        // While the hook runs, the caller's reference keeps this call alive; it joins the chain
        // instance's held list only if the plugin keeps it past the hook (most complete it inside).
        let status = onRequests(instance, handle, requests.handle)
        if status != SLUICE_OK, state == .requested {
            step.metrics.errorReturned()
            _ = fail("on_requests returned status \(status)")
        }
        if state != .done {
            if chain.isClosed { abandon() } else { holdForPlugin() }
        }
    }

    // MARK: continuations the plugin calls

    func forward() -> Int32 {
        guard state == .requested else { return misuse("call_forward on a call that was already completed") }
        guard localAnswers.fit(requests.count) else { return answeredBeyondTheBatch() }
        if step.onResponses == nil, requests.count != requestCount {
            step.metrics.errorReturned()
            _ = fail("changed the number of requests without an on_responses hook to answer them all")
            return SLUICE_ERROR_INVALID_ARGUMENT
        }
        guard step.onResponses != nil else { return passOn() }
        forwarding = true
        defer { forwarding = false }
        state = .forwarded
        // The rest of the chain gets its own batch object (the messages are shared, not copied):
        // a later transform may change what it was given (redirect takes hot requests out), and
        // on_responses must still see the requests as this step forwarded them, one per response.
        chain.run(localAnswers.isEmpty ? requests.copy() : localAnswers.unanswered(requests), from: position + 1,
                  receiver: self)
        return SLUICE_OK
    }

    /// call_pass: forwards with the responses bypassing this step's on_responses hook.
    func pass() -> Int32 {
        guard state == .requested else { return misuse("call_pass on a call that was already completed") }
        guard localAnswers.fit(requests.count) else { return answeredBeyondTheBatch() }
        guard requests.count == requestCount else {
            step.metrics.errorReturned()
            _ = fail("call_pass with \(requests.count) of \(requestCount) requests (removed requests need on_responses)")
            return SLUICE_ERROR_INVALID_ARGUMENT
        }
        return passOn()
    }

    /// The rest of the chain answers the original receiver directly; this call is done.
    private func passOn() -> Int32 {
        state = .done
        if localAnswers.isEmpty {
            chain.run(requests, from: position + 1, receiver: receiver)
        } else {
            let merger = LocalAnswersMerger(answers: localAnswers, total: requests.count, receiver: receiver,
                                            allocator: chain.session.allocator)
            let rest = localAnswers.unanswered(requests)
            localAnswers.removeAll()
            chain.run(rest, from: position + 1, receiver: merger)
        }
        releaseFromPlugin()
        return SLUICE_OK
    }

    func respond(_ handle: OpaquePointer?) -> Int32 {
        guard state == .requested || state == .awaitingRespond else {
            return misuse("call_respond on a call that was already completed")
        }
        let batch: Batch
        if let handle {
            let given = Batch.from(handle)
            if given === responses {
                batch = given
            } else {
                guard !given.isLent else { return misuse("call_respond with a lent batch") }
                batch = Unmanaged<Batch>.fromOpaque(UnsafeRawPointer(handle)).takeRetainedValue()
            }
        } else {
            guard state == .awaitingRespond, let responses else {
                return misuse("call_respond(NULL) outside on_responses")
            }
            batch = responses
        }
        guard batch.kind == Batch.responses, batch.count == requestCount else {
            step.metrics.errorReturned()
            let kind = batch.kind == Batch.responses ? "" : " (a request batch)"
            _ = fail("responded with \(batch.count) responses\(kind) to \(requestCount) requests")
            return SLUICE_ERROR_INVALID_ARGUMENT
        }
        finish(.responses(batch))
        return SLUICE_OK
    }

    func fail(_ message: String) -> Int32 {
        guard state == .requested || state == .awaitingRespond else {
            return misuse("call_fail on a call that was already completed")
        }
        step.metrics.failed()
        finish(.responses(Batch.errors("ERR \(step.transformName): \(message)", count: requestCount,
                                       allocator: chain.session.allocator)))
        return SLUICE_OK
    }

    // MARK: responses from the rest of the chain

    func receive(_ outcome: ChainOutcome) {
        guard state == .forwarded else { return }
        guard !chain.isClosed else {
            // The plugin instance was freed with its connection: the call is abandoned. (Calls the
            // plugin held were abandoned by close; this is one it never held, with no on_requests.)
            abandon()
            return
        }
        if forwarding {
            chain.session.eventLoop.execute { self.receive(outcome) }
            return
        }
        let batch: Batch
        if !localAnswers.isEmpty {
            batch = localAnswers.merged(outcome, total: requests.count, allocator: chain.session.allocator)
            localAnswers.removeAll()
        } else {
            switch outcome {
            case .responses(let b): batch = b
            case .failed(let message):
                batch = Batch.errors("ERR \(message)", count: requests.count, allocator: chain.session.allocator)  // the forwarded count
            }
        }
        guard let onResponses = step.onResponses else {
            finish(.responses(batch))
            return
        }
        state = .awaitingRespond
        responses = batch
        batch.isLent = true
        let status = onResponses(instance, handle, requests.handle, batch.handle)
        if status != SLUICE_OK, state == .awaitingRespond {
            step.metrics.errorReturned()
            _ = fail("on_responses returned status \(status)")
        }
    }

    /// call_answer: request `index` is answered with message `replyIndex` of `replies`.
    func answer(_ index: Int, from replies: Batch, _ replyIndex: Int) -> Int32 {
        guard state == .requested else { return misuse("call_answer on a call that was already forwarded or completed") }
        guard index >= 0, index < requests.count, replies.kind == Batch.responses,
              replies.protocolID == requests.protocolID, replyIndex >= 0, replyIndex < replies.count
        else { return SLUICE_ERROR_INVALID_ARGUMENT }
        localAnswers.set(replies.messages[replyIndex], at: index)
        return SLUICE_OK
    }

    private func answeredBeyondTheBatch() -> Int32 {
        step.metrics.errorReturned()
        _ = fail("answered a request beyond the \(requests.count) requests forwarded (requests removed after call_answer)")
        return SLUICE_ERROR_INVALID_ARGUMENT
    }

    // MARK: private

    private func finish(_ outcome: ChainOutcome) {
        state = .done
        responses = nil
        localAnswers.removeAll()
        receiver.receive(outcome)
        releaseFromPlugin()
    }

    private func misuse(_ what: String) -> Int32 {
        step.metrics.misused()
        HostLog.plugins.warning("\(step.label): \(what); ignored")
        return SLUICE_ERROR_STATE
    }

    private func holdForPlugin() {
        guard !heldByPlugin else { return }
        heldByPlugin = true
        chain.hold(self)
    }

    private func releaseFromPlugin() {
        guard heldByPlugin else { return }
        heldByPlugin = false
        chain.release(self)
    }

    /// The connection closed while the plugin still held this call: it will never be completed.
    func abandon() {
        state = .done
        responses = nil
        heldByPlugin = false
    }
}

extension Batch {
    /// The opaque handle lent to plugins (no retain).
    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    /// Hands the batch to a plugin as an owned batch (one retain on its behalf).
    func handOverToPlugin() -> OpaquePointer {
        isLent = false
        return OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    static func from(_ handle: OpaquePointer) -> Batch {
        Unmanaged<Batch>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    static func from(_ handle: OpaquePointer?) -> Batch? {
        handle.map { from($0) }
    }
}
