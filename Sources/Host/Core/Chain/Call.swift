import NIOCore
import PluginABI

/// One `on_requests` invocation of one transform: the continuation a plugin holds as `sluice_call*`.
///
/// States: `.requested` (the plugin must forward, respond or fail) → `.forwarded` (waiting for the
/// rest of the chain) → `.awaitingRespond` (on_responses ran; the plugin must respond or fail) →
/// `.done`. The plugin sees the call through a handle of the thread's `HandleTable`, issued when
/// the call starts and retired when it completes (or expires, or is abandoned): a handle the plugin
/// kept is refused afterwards, even when this object is reused for the step's next batch.
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
    /// The handles the plugin holds for this call: the call's, its lent request batch's, and in
    /// on_responses the lent response batch's. Retired together when the call completes.
    private(set) var handle: OpaquePointer?
    private var requestsHandle: OpaquePointer?
    private var responsesHandle: OpaquePointer?
    /// The thread's handle table (this call lives on its connection's event loop).
    private let handles: HandleTable
    /// The session and step made the thread's active ones around this call's hooks (not retained:
    /// hooks run only while the chain instance is open, so while its session lives).
    private let activeSession: Unmanaged<ChainSession>
    private let activeStep: Unmanaged<TransformStep>
    /// Slots of `handles` this call keeps for its whole life, one per handle above, and lends
    /// itself and its batches through (not retained: the call holds the batches while their
    /// handles are live, and the chain holds the call): a hook costs a few stores, not a register
    /// and a retire. Each completion still advances their generations, so a handle kept from an
    /// earlier use of this (reused) call object is refused. -1 until first used.
    private var callSlot: Int32 = -1
    private var requestsSlot: Int32 = -1
    private var responsesSlot: Int32 = -1
    /// When the plugin's turn began for a call it kept past its hook (for the call deadline).
    private(set) var turnStarted: NIODeadline?
    /// call_set_deadline's value for this call (nil: the plan's deadline; 0: none).
    private var deadlineOverride: Int64?

    /// The deadline clock of this call starts again (its transform still waits for a send).
    func restartTurn(at now: NIODeadline) {
        if turnStarted != nil { turnStarted = now }
    }

    /// The deadline that applies to this call, in milliseconds (0: none).
    var deadlineMilliseconds: Int64 { deadlineOverride ?? chain.session.plan.callDeadlineMilliseconds }

    /// call_set_deadline: from now, the plugin has `milliseconds` (0: no limit) to complete the call.
    func setDeadline(milliseconds: Int64) -> Int32 {
        deadlineOverride = milliseconds
        if isPluginsTurn {
            turnStarted = .now()
            if heldByPlugin { chain.callAwaitsPlugin(self) }
        }
        return SLUICE_OK
    }

    init(chain: ChainInstance, position: Int, step: TransformStep, instance: UnsafeMutableRawPointer?,
         requests: Batch, receiver: ResponseReceiver, forwarded: Bool = false) {
        self.chain = chain
        self.position = position
        self.step = step
        self.instance = instance
        currentRequests = requests
        requestCount = requests.count
        currentReceiver = receiver
        let session = chain.session
        handles = session.handles
        activeSession = .passUnretained(session)
        activeStep = .passUnretained(step)
        if forwarded { state = .forwarded }
    }

    deinit {
        // Live handles are retired when the call completes or is abandoned, before the chain lets
        // go of it; unreserving retires anything left, so a slot never outlives its object.
        if callSlot >= 0 { handles.unreserve(slot: callSlot) }
        if requestsSlot >= 0 { handles.unreserve(slot: requestsSlot) }
        if responsesSlot >= 0 { handles.unreserve(slot: responsesSlot) }
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
        deadlineOverride = nil
    }

    /// Drops what a completed call still references (the batch may hold a large read), so a call
    /// kept for reuse holds nothing of its last batch.
    func vacate() {
        currentRequests = nil
        currentReceiver = nil
    }

    /// Whether the call may be reused: completed inside its hook, and kept by nothing else.
    var isReusable: Bool { state == .done && !heldByPlugin }

    /// The call behind a live call handle of this thread, or nil (logged) for a stale one.
    @inline(__always)
    static func from(_ handle: OpaquePointer?, _ function: StaticString) -> Call? {
        guard let (object, _) = HandleTable.resolve(handle, .call, function) else { return nil }
        return unsafeDowncast(object.takeUnretainedValue(), to: Call.self)
    }

    /// Lends this call to the plugin: its handle for this use of the call object.
    private func lendSelf() -> OpaquePointer {
        if callSlot < 0 { callSlot = handles.reserveSlot() }
        let lent = handles.lend(self, slot: callSlot, kind: .call, step: step)
        handle = lent
        return lent
    }

    /// Lends the call's request batch (while the call holds it).
    private func lendRequests() -> OpaquePointer {
        if requestsSlot < 0 { requestsSlot = handles.reserveSlot() }
        let lent = handles.lend(requests, slot: requestsSlot, kind: .lentBatch, step: step)
        requestsHandle = lent
        return lent
    }

    /// Whether the plugin must act next (respond, fail or forward), as opposed to waiting for the
    /// rest of the chain.
    var isPluginsTurn: Bool { state == .requested || state == .awaitingRespond }

    /// Hands the request batch to the plugin's on_requests hook.
    func start() {
        guard let onRequests = step.onRequests else { return }
        let callHandle = lendSelf()
        let requestsHandle = lendRequests()
        // While the hook runs, the caller's reference keeps this call alive; it joins the chain
        // instance's held list only if the plugin keeps it past the hook (most complete it inside).
        let status = handles.runningHook(session: activeSession, step: activeStep) {
            recordingCrashStep(step.crashLabels, .onRequests) { onRequests(instance, callHandle, requestsHandle) }
        }
        if status != SLUICE_OK, state == .requested {
            step.metrics.errorReturned()
            _ = fail("on_requests returned status \(status)")
        }
        keepIfPending()
    }

    /// After a hook: a call the plugin did not complete is held (and its deadline runs while it is
    /// the plugin's turn), or abandoned if the connection closed meanwhile.
    private func keepIfPending() {
        guard state != .done else { return }
        if chain.isClosed {
            abandon()
            return
        }
        holdForPlugin()
        if isPluginsTurn {
            turnStarted = .now()
            chain.callAwaitsPlugin(self)
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
        retireHandles()
        // Done: the call needs its batch and receiver no more (moved out, not copied).
        let requests = currentRequests.take()!
        let receiver = currentReceiver.take()!
        if localAnswers.isEmpty {
            chain.run(requests, from: position + 1, receiver: receiver)
        } else {
            let merger = LocalAnswersMerger(answers: localAnswers, requests: requests, receiver: receiver,
                                            allocator: chain.session.allocator)
            let rest = localAnswers.unanswered(requests)
            localAnswers.removeAll()
            merger.deliverLocalAnswers(on: chain.session.eventLoop)
            chain.run(rest, from: position + 1, receiver: merger)
        }
        releaseFromPlugin()
        return SLUICE_OK
    }

    func respond(_ given: OpaquePointer?) -> Int32 {
        guard state == .requested || state == .awaitingRespond else {
            return misuse("call_respond on a call that was already completed")
        }
        let batch: Batch
        if let given {
            if given == responsesHandle, let responses {
                batch = responses
            } else {
                guard let (object, kind) = HandleTable.resolve(given, .batch, "call_respond") else {
                    return misuse("call_respond with a stale or foreign batch handle")
                }
                guard kind == .ownedBatch else { return misuse("call_respond with a lent batch") }
                batch = unsafeDowncast(object.takeUnretainedValue(), to: Batch.self)
                handles.retire(given)  // ownership moves to the host
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
        checkAnswers(batch)
        finish(.responses(batch))
        return SLUICE_OK
    }

    /// call_fail and call_fail_code: every request is answered with an error in its protocol
    /// (Redis `-ERR <transform>: <message>`, CQL an ERROR frame with `cqlCode`).
    func fail(_ message: String, cqlCode: CQLErrorCode = .serverError) -> Int32 {
        guard state == .requested || state == .awaitingRespond else {
            return misuse("call_fail on a call that was already completed")
        }
        step.metrics.failed()
        finish(.responses(Batch.errors("\(step.transformName): \(message)", cqlCode: cqlCode, answering: requests,
                                       count: requestCount, allocator: chain.session.allocator)))
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
            batch = localAnswers.merged(outcome, requests: requests, allocator: chain.session.allocator)
            localAnswers.removeAll()
        } else {
            switch outcome {
            case .responses(let b): batch = b
            case .failed(let message):
                batch = Batch.errors(message, answering: requests, count: requests.count,  // the forwarded count
                                     allocator: chain.session.allocator)
            }
        }
        guard let onResponses = step.onResponses else {
            finish(.responses(batch))
            return
        }
        state = .awaitingRespond
        responses = batch
        if handle == nil { _ = lendSelf() }  // a step with on_responses only
        if requestsHandle == nil { _ = lendRequests() }
        if responsesSlot < 0 { responsesSlot = handles.reserveSlot() }
        responsesHandle = handles.lend(batch, slot: responsesSlot, kind: .lentBatch, step: step)
        let (callHandle, requestsHandle, responsesHandle) = (handle, self.requestsHandle, self.responsesHandle)
        let status = handles.runningHook(session: activeSession, step: activeStep) {
            recordingCrashStep(step.crashLabels, .onResponses) {
                onResponses(instance, callHandle, requestsHandle, responsesHandle)
            }
        }
        if status != SLUICE_OK, state == .awaitingRespond {
            step.metrics.errorReturned()
            _ = fail("on_responses returned status \(status)")
        }
        keepIfPending()
    }

    /// The call deadline passed while it was the plugin's turn: the requests are answered with an
    /// error, and whatever the plugin does with its handle later is refused.
    func expire(after milliseconds: Int64) {
        guard isPluginsTurn else { return }
        step.metrics.failed()
        HostLog.plugins.warning("\(step.label): a call was not completed within \(milliseconds) ms; its requests fail")
        finish(.responses(Batch.errors(
            "\(step.transformName): the transform did not answer within \(milliseconds) ms (sluice call deadline)",
            answering: requests, count: requestCount, allocator: chain.session.allocator)))
    }

    /// call_answer: request `index` is answered with message `replyIndex` of `replies`.
    func answer(_ index: Int, from replies: Batch, _ replyIndex: Int) -> Int32 {
        guard state == .requested else { return misuse("call_answer on a call that was already forwarded or completed") }
        guard index >= 0, index < requests.count, replies.kind == Batch.responses,
              replies.protocolID == requests.protocolID, replyIndex >= 0, replyIndex < replies.count
        else { return SLUICE_ERROR_INVALID_ARGUMENT }
        let reply = replies.messages[replyIndex]
        localAnswers.set(requests.protocolID == Batch.cql ? answerChecked(reply, answering: requests.messages[index]) ?? reply
                                                          : reply, at: index)
        return SLUICE_OK
    }

    /// A CQL answer as the client must get it: on its request's stream and in its version
    /// (`CQLAnswerStamp`; a frame of another version is replaced with an ERROR saying so), or nil
    /// when `reply` is that already.
    private func answerChecked(_ reply: ByteBuffer, answering request: ByteBuffer) -> ByteBuffer? {
        switch CQLAnswerStamp.check(reply, answering: request, step: step.label, allocator: chain.session.allocator) {
        case .unchanged:
            return nil
        case .stamped(let stamped):
            return stamped
        case .refused(let error, let why):
            step.metrics.misused()
            CQLAnswerStamp.logRefusal(why, label: step.label)
            return error
        }
    }

    /// Checks each CQL answer of `batch` against its request (`answerChecked`). Only when the
    /// batch pairs one by one with `requests`: after the plugin removed requests, which answer goes
    /// with which request is no longer known here.
    private func checkAnswers(_ batch: Batch) {
        guard batch.protocolID == Batch.cql, requests.protocolID == Batch.cql, batch.count == requests.count else { return }
        for i in 0..<batch.count {
            if let checked = answerChecked(batch.messages[i], answering: requests.messages[i]) { batch.put(checked, at: i) }
        }
    }

    private func answeredBeyondTheBatch() -> Int32 {
        step.metrics.errorReturned()
        _ = fail("answered a request beyond the \(requests.count) requests forwarded (requests removed after call_answer)")
        return SLUICE_ERROR_INVALID_ARGUMENT
    }

    // MARK: private

    private func finish(_ outcome: ChainOutcome) {
        state = .done
        retireHandles()  // before letting go of the lent batches
        responses = nil
        localAnswers.removeAll()
        currentRequests = nil
        currentReceiver.take()!.receive(outcome)  // done: the receiver is not needed again
        releaseFromPlugin()
    }

    /// Ends the plugin's handles of this call: later uses of them are refused.
    private func retireHandles() {
        turnStarted = nil
        if handle != nil { handles.retire(slot: callSlot) }
        if requestsHandle != nil { handles.retire(slot: requestsSlot) }
        if responsesHandle != nil { handles.retire(slot: responsesSlot) }
        handle = nil
        requestsHandle = nil
        responsesHandle = nil
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
        retireHandles()
        responses = nil
        heldByPlugin = false
    }
}

extension Batch {
    /// The batch behind a live batch handle of this thread (lent or owned), or nil (logged).
    static func from(_ handle: OpaquePointer?, _ function: StaticString) -> Batch? {
        guard let (object, _) = HandleTable.resolve(handle, .batch, function) else { return nil }
        return unsafeDowncast(object.takeUnretainedValue(), to: Batch.self)
    }

    /// `body` applied to the batch behind a live batch handle of this thread, or `otherwise` (logged)
    /// for a stale or foreign one. The batch is not retained for it: `body` must not end the handle
    /// (free, send or respond with the batch) nor run plugin code (the accessors of a batch).
    @inline(__always)
    static func with<R>(_ handle: OpaquePointer?, _ function: StaticString, otherwise: R, _ body: (Batch) -> R) -> R {
        guard let (object, _) = HandleTable.resolve(handle, .batch, function) else { return otherwise }
        return Unmanaged<Batch>.fromOpaque(object.toOpaque())._withUnsafeGuaranteedRef(body)
    }

    /// Hands the batch to a plugin as an owned batch: a new handle, retained until the plugin frees
    /// it or gives it away.
    func handOverToPlugin(step: TransformStep? = nil) -> OpaquePointer {
        HandleTable.current.register(self, kind: .ownedBatch, step: step)
    }
}
