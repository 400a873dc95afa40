import NIOCore
import PluginABI

/// The table of host functions handed to every plugin's `sluice_plugin_init`.
///
/// Each entry is a C function that turns the opaque handles back into host objects. None of them
/// traps on bad input from a plugin: they check what can be checked and return a status.
enum HostAPI {
    static let version = "0.1.0"
    private static let versionCString: UnsafePointer<CChar> = {
        let bytes = Array(version.utf8CString)
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        p.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(p)
    }()

    /// Built once, never freed: plugins keep the pointer for the life of the process.
    static let table: UnsafePointer<sluice_host_api> = {
        let p = UnsafeMutablePointer<sluice_host_api>.allocate(capacity: 1)
        p.initialize(to: makeTable())
        return UnsafePointer(p)
    }()

    static let allocator = ByteBufferAllocator()

    /// A plugin's (pointer, length) as bytes; empty for a negative length (a size_t of SIZE_MAX
    /// arrives as -1) or a NULL pointer, so a plugin's bad argument is refused, never a trap.
    static func bytes(_ start: UnsafeRawPointer?, _ length: Int) -> UnsafeRawBufferPointer {
        guard let start, length > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: start, count: length)
    }

    /// send and send_ex: the batch's ownership moves to the host (even on error); the completion
    /// is called later, at most once.
    private static func send(_ env: OpaquePointer?, _ target: OpaquePointer?, _ batch: OpaquePointer?,
                             timeout: UInt64, _ completion: sluice_send_completion_fn?,
                             _ userData: UnsafeMutableRawPointer?, _ outSend: UnsafeMutablePointer<OpaquePointer?>?,
                             _ function: StaticString) -> Int32 {
        outSend?.pointee = nil
        guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
        guard let (object, kind) = HandleTable.resolve(batch, .batch, function) else { return SLUICE_ERROR_STATE }
        guard kind == .ownedBatch else {
            HostLog.plugins.warning("\(function): a lent batch cannot be sent; ignored")
            return SLUICE_ERROR_INVALID_ARGUMENT
        }
        let owned = unsafeDowncast(object.takeUnretainedValue(), to: Batch.self)
        HandleTable.current.retire(batch)  // the host owns it now, whatever happens next
        guard let env, let target, let completion, owned.kind == Batch.requests else {
            return SLUICE_ERROR_INVALID_ARGUMENT
        }
        let instanceEnv = InstanceEnv.from(env)
        guard !instanceEnv.isClosed else { return SLUICE_ERROR_STATE }
        let targetRef = Unmanaged<TargetRef>.fromOpaque(UnsafeRawPointer(target)).takeUnretainedValue()
        let receiver = SendCompletion(env: instanceEnv, callback: completion, userData: userData,
                                      targetName: targetRef.name)
        if outSend != nil || timeout > 0 {
            let handle = instanceEnv.track(receiver)
            outSend?.pointee = handle
            if timeout > 0 { receiver.startTimeout(milliseconds: timeout) }
        }
        instanceEnv.session.send(owned, to: targetRef, receiver: receiver)
        receiver.insideSend = false
        return SLUICE_OK
    }

    private static func makeTable() -> sluice_host_api {
        var api = sluice_host_api()
        api.struct_size = UInt32(MemoryLayout<sluice_host_api>.size)
        api.abi_major = UInt32(SLUICE_ABI_VERSION_MAJOR)
        api.abi_minor = UInt32(SLUICE_ABI_VERSION_MINOR)
        api.host_version = versionCString

        api.log = { level, message, length in
            guard let message else { return }
            let text = String(decoding: HostAPI.bytes(message, length), as: UTF8.self)
            switch level {
            case Int32(SLUICE_LOG_TRACE): HostLog.plugins.trace("\(text)")
            case Int32(SLUICE_LOG_DEBUG): HostLog.plugins.debug("\(text)")
            case Int32(SLUICE_LOG_INFO): HostLog.plugins.info("\(text)")
            case Int32(SLUICE_LOG_WARNING): HostLog.plugins.warning("\(text)")
            default: HostLog.plugins.error("\(text)")
            }
        }
        api.metric_counter = { env, name, length, out in
            guard let env, let name, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let text = String(decoding: HostAPI.bytes(name, length), as: UTF8.self)
            guard !text.isEmpty, text.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == 95 })
            else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let configEnv = ConfigEnv.from(env)
            let counter = PluginCounter(name: text, plugin: configEnv.step.pluginName, step: configEnv.step.label)
            out.pointee = OpaquePointer(Unmanaged.passRetained(counter).toOpaque())
            return SLUICE_OK
        }
        api.metric_add = { metric, delta in
            guard let metric else { return }
            // Counters live as long as the process: no retain for the call.
            Unmanaged<PluginCounter>.fromOpaque(UnsafeRawPointer(metric))._withUnsafeGuaranteedRef {
                $0.counter.increment(by: Int64(clamping: delta))
            }
        }

        // Config nodes.
        api.node_kind = { node in
            guard let node else { return SLUICE_NODE_NULL }
            switch YAMLNode.from(node).kind {
            case .null: return SLUICE_NODE_NULL
            case .scalar: return SLUICE_NODE_SCALAR
            case .sequence: return SLUICE_NODE_SEQUENCE
            case .map: return SLUICE_NODE_MAP
            }
        }
        api.node_scalar = { node, out in
            guard let node, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let n = YAMLNode.from(node)
            guard n.kind == .scalar else { return SLUICE_ERROR_INVALID_ARGUMENT }
            n.cString.withUnsafeBufferPointer { out.pointee = sluice_host_view(ptr: $0.baseAddress, len: $0.count - 1) }
            return SLUICE_OK
        }
        api.node_map_get = { node, key, length, out in
            guard let node, let key, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let n = YAMLNode.from(node)
            guard n.kind == .map else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let wanted = String(decoding: HostAPI.bytes(key, length), as: UTF8.self)
            guard let value = n[wanted] else {
                out.pointee = nil
                return SLUICE_ERROR_NOT_FOUND
            }
            out.pointee = value.handle
            return SLUICE_OK
        }
        api.node_count = { node in
            guard let node else { return 0 }
            let n = YAMLNode.from(node)
            switch n.kind {
            case .sequence: return n.items.count
            case .map: return n.pairs.count
            default: return 0
            }
        }
        api.node_at = { node, index, outKey, outValue in
            guard let node, let outValue else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let n = YAMLNode.from(node)
            switch n.kind {
            case .sequence where index >= 0 && index < n.items.count:
                outKey?.pointee = nil
                outValue.pointee = n.items[index].handle
            case .map where index >= 0 && index < n.pairs.count:
                outKey?.pointee = n.pairs[index].key.handle
                outValue.pointee = n.pairs[index].value.handle
            default:
                return SLUICE_ERROR_INVALID_ARGUMENT
            }
            return SLUICE_OK
        }
        api.node_position = { node, line, column in
            let n = node.map { YAMLNode.from($0) }
            line?.pointee = UInt32(n?.line ?? 0)
            column?.pointee = UInt32(n?.column ?? 0)
        }
        api.config_error = { env, node, message, length in
            guard let env else { return }
            let text = message.map { String(decoding: HostAPI.bytes($0, length), as: UTF8.self) }
                ?? "invalid configuration"
            ConfigEnv.from(env).error(at: node.map { YAMLNode.from($0) }, text)
        }
        api.target_resolve = { env, name, length, out in
            guard let env, let name, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let text = String(decoding: HostAPI.bytes(name, length), as: UTF8.self)
            guard let target = ConfigEnv.from(env).resolve(text) else { return SLUICE_ERROR_NOT_FOUND }
            // Targets live as long as the process (the plugin may keep the handle forever).
            out.pointee = OpaquePointer(Unmanaged.passRetained(target).toOpaque())
            return SLUICE_OK
        }

        api.config_transform_name = { env, out in
            guard let env, let out else { return }
            let name = ConfigEnv.from(env).transformNameCString
            out.pointee = sluice_host_view(ptr: name.baseAddress, len: name.count - 1)
        }

        // Calls. Every handle is resolved through the thread's HandleTable: a stale one is
        // refused (SLUICE_ERROR_STATE) and logged, never dereferenced.
        api.call_forward = { call in
            guard let call else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Call.from(call, "call_forward")?.forward() ?? SLUICE_ERROR_STATE
        }
        api.call_pass = { call in
            guard let call else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Call.from(call, "call_pass")?.pass() ?? SLUICE_ERROR_STATE
        }
        api.call_respond = { call, batch in
            guard let call else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Call.from(call, "call_respond")?.respond(batch) ?? SLUICE_ERROR_STATE
        }
        api.call_fail = { call, message, length in
            guard let call else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let resolved = Call.from(call, "call_fail") else { return SLUICE_ERROR_STATE }
            let text = message.map { String(decoding: HostAPI.bytes($0, length), as: UTF8.self) }
                ?? "failed"
            return resolved.fail(text)
        }
        api.call_set_data = { call, data in
            Call.from(call, "call_set_data")?.pluginData = data
        }
        api.call_data = { call in
            Call.from(call, "call_data")?.pluginData
        }
        api.call_set_deadline = { call, milliseconds in
            guard let call else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let resolved = Call.from(call, "call_set_deadline") else { return SLUICE_ERROR_STATE }
            return resolved.setDeadline(milliseconds: Int64(clamping: min(milliseconds, UInt64(Int64.max / 1_000_000))))
        }

        // Sends and timers.
        api.send = { env, target, batch, completion, userData in
            HostAPI.send(env, target, batch, timeout: 0, completion, userData, nil, "send")
        }
        api.send_ex = { env, target, batch, timeout, completion, userData, outSend in
            HostAPI.send(env, target, batch, timeout: timeout, completion, userData, outSend, "send_ex")
        }
        api.send_cancel = { send in
            guard let send else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let (object, _) = HandleTable.resolve(send, .send, "send_cancel") else {
                return SLUICE_ERROR_STATE
            }
            unsafeDowncast(object.takeUnretainedValue(), to: SendCompletion.self).cancel()
            return SLUICE_OK
        }
        api.timer_start = { env, delay, callback, userData, out in
            guard let env, let callback else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let instanceEnv = InstanceEnv.from(env)
            guard !instanceEnv.isClosed else { return SLUICE_ERROR_STATE }
            // Not `out?.pointee = startTimer(…)`: optional chaining would skip the call for a NULL out.
            let timer = instanceEnv.startTimer(delayMilliseconds: delay, callback: callback, userData: userData)
            out?.pointee = timer
            return SLUICE_OK
        }
        api.timer_cancel = { timer in
            guard let t = PluginTimer.from(timer, "timer_cancel") else { return }
            t.owner?.cancelTimer(t)
        }
        api.client_address = { env, out in
            guard let env, let out else { return }
            let instanceEnv = InstanceEnv.from(env)
            guard !instanceEnv.isClosed else {
                out.pointee = sluice_host_view(ptr: nil, len: 0)
                return
            }
            let session = instanceEnv.session
            out.pointee = sluice_host_view(ptr: UnsafePointer(session.clientAddress.baseAddress),
                                           len: session.clientAddress.count - 1)
        }

        // Batches.
        api.batch_count = { batch in Batch.with(batch, "batch_count", otherwise: 0) { $0.count } }
        api.batch_kind = { batch in Batch.with(batch, "batch_kind", otherwise: -1) { $0.kind } }
        api.batch_protocol = { batch in Batch.with(batch, "batch_protocol", otherwise: -1) { $0.protocolID } }
        api.batch_new = { kind, protocolID in
            guard kind == Batch.requests || kind == Batch.responses, protocolID == Batch.redis || protocolID == Batch.cql
            else { return nil }
            return Batch(kind: kind, protocolID: protocolID).handOverToPlugin()
        }
        api.batch_clone = { batch in
            Batch.from(batch, "batch_clone")?.copy().handOverToPlugin()
        }
        api.batch_free = { batch in
            guard let batch else { return }
            guard let (_, kind) = HandleTable.resolve(batch, .batch, "batch_free") else { return }
            guard kind == .ownedBatch else {
                HostLog.plugins.warning("batch_free on a lent batch; ignored")
                return
            }
            HandleTable.current.retire(batch)
        }
        api.batch_insert_from = { dst, dstIndex, src, srcIndex in
            guard let dst, let src else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let d = Batch.from(dst, "batch_insert_from"), let s = Batch.from(src, "batch_insert_from")
            else { return SLUICE_ERROR_STATE }
            guard d.kind == s.kind, d.protocolID == s.protocolID, dstIndex >= 0, dstIndex <= d.count, srcIndex >= 0, srcIndex < s.count
            else { return SLUICE_ERROR_INVALID_ARGUMENT }
            d.insert(s.messages[srcIndex], at: dstIndex)
            return SLUICE_OK
        }
        api.batch_remove = { batch, index in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "batch_remove") else { return SLUICE_ERROR_STATE }
            guard index >= 0, index < b.count else { return SLUICE_ERROR_INVALID_ARGUMENT }
            b.remove(at: index)
            return SLUICE_OK
        }
        api.batch_message_bytes = { batch, index, out in
            guard let batch, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Batch.with(batch, "batch_message_bytes", otherwise: SLUICE_ERROR_STATE) { b in
                guard index >= 0, index < b.count else { return SLUICE_ERROR_INVALID_ARGUMENT }
                out.pointee = b.withMessageBytes(index) { sluice_host_view(ptr: $0.baseAddress?.assumingMemoryBound(to: UInt8.self), len: $0.count) }
                return SLUICE_OK
            }
        }
        api.batch_put_bytes = { batch, index, bytes, length in
            guard let batch, length >= 0, bytes != nil || length == 0 else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "batch_put_bytes") else { return SLUICE_ERROR_STATE }
            guard index >= 0, index <= b.count else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let raw = HostAPI.bytes(bytes, length)
            // Exactly one whole message of the batch's protocol and kind, checked by its folder.
            let message = b.protocolID == Batch.cql
                ? HostAPI.cqlMessage(raw, isResponse: b.kind == Batch.responses)
                : HostAPI.redisMessage(raw, isRequest: b.kind == Batch.requests)
            guard let message else { return SLUICE_ERROR_MALFORMED }
            b.put(message, at: index)
            return SLUICE_OK
        }

        addRedis(to: &api)
        addReach(to: &api)
        addControl(to: &api)
        addCQL(to: &api)
        return api
    }
}
