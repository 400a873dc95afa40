import NIOCore
import PluginABI

/// The host functions for Redis batches: the arguments of commands and their replacement, a cursor
/// over replies and their replacement (ABI 1.0), and changing one argument in place and finding a
/// command's keys (ABI 1.1). Every one refuses a batch of the other protocol.
extension HostAPI {
    /// RESP3's null, `_\r\n`.
    private static func resp3Null() -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 3)
        buffer.writeStaticString("_\r\n")
        return buffer
    }

    /// batch_put_bytes into a Redis batch: `raw`, copied, when it is exactly one command (`isRequest`)
    /// or one reply; nil when it is not.
    static func redisMessage(_ raw: UnsafeRawBufferPointer, isRequest: Bool) -> ByteBuffer? {
        let length = raw.count
        let valid: Bool
        if isRequest {
            var scanner = RESPRequestScanner(maxFrameBytes: Int.max)
            valid = scanner.scan(raw) == .multibulk(length: length)
        } else {
            var scanner = RESPFrameScanner(maxFrameBytes: Int.max)
            valid = scanner.scan(raw) == .complete(length: length)
        }
        guard valid else { return nil }
        var message = allocator.buffer(capacity: length)
        message.writeBytes(raw)
        return message
    }

    static func addRedis(to api: inout sluice_host_api) {
        // Redis commands.
        api.redis_arg_count = { batch, index in
            Batch.with(batch, "redis_arg_count", otherwise: 0) { b in
                guard b.kind == Batch.requests, b.protocolID == Batch.redis, index >= 0, index < b.count else { return 0 }
                return b.withMessageBytes(index) { RESPCommandReader.argumentCount($0) }
            }
        }
        api.redis_args = { batch, index, out, capacity, outCount in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Batch.with(batch, "redis_args", otherwise: SLUICE_ERROR_STATE) { b in
                guard b.kind == Batch.requests, b.protocolID == Batch.redis, index >= 0, index < b.count else {
                    return SLUICE_ERROR_INVALID_ARGUMENT
                }
                var count = 0
                b.withMessageBytes(index) { bytes in
                    guard let out, capacity > 0, let base = bytes.baseAddress else {
                        count = RESPCommandReader.argumentCount(bytes)
                        return
                    }
                    // One pass: the views, and the count the header declares.
                    count = RESPCommandReader.forEachArgument(bytes) { i, start, length in
                        out[i] = sluice_host_view(ptr: base.advanced(by: start).assumingMemoryBound(to: UInt8.self), len: length)
                        return i + 1 < capacity
                    }
                }
                outCount?.pointee = count
                return SLUICE_OK
            }
        }
        api.redis_put_command = { batch, index, argc, argv, lengths in
            guard let batch, argc > 0, argc <= RESPRequestScanner.maxArguments, let argv, let lengths else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_put_command") else { return SLUICE_ERROR_STATE }
            guard b.kind == Batch.requests, b.protocolID == Batch.redis, index >= 0, index <= b.count else {
                return SLUICE_ERROR_INVALID_ARGUMENT
            }
            var args: [UnsafeRawBufferPointer] = []
            args.reserveCapacity(argc)
            for i in 0..<argc {
                guard lengths[i] >= 0, argv[i] != nil || lengths[i] == 0 else { return SLUICE_ERROR_INVALID_ARGUMENT }
                args.append(HostAPI.bytes(argv[i], lengths[i]))
            }
            b.put(RESPEncoding.command(args, allocator: HostAPI.allocator), at: index)
            return SLUICE_OK
        }

        // Redis replies.
        api.redis_cursor_init = { batch, index, cursor in
            guard let batch, let cursor else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_cursor_init") else { return SLUICE_ERROR_STATE }
            guard b.kind == Batch.responses, b.protocolID == Batch.redis, index >= 0, index < b.count else {
                return SLUICE_ERROR_INVALID_ARGUMENT
            }
            b.withMessageBytes(index) { bytes in
                ReplyCursor.initialize(cursor, batch: batch, generation: b.generation, bytes: bytes)
            }
            return SLUICE_OK
        }
        api.redis_cursor_next = { cursor, out in
            guard let cursor, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return ReplyCursor.next(cursor, out)
        }
        api.redis_put_reply = { batch, index, type, bytes, length, integer in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_put_reply") else { return SLUICE_ERROR_STATE }
            guard b.kind == Batch.responses, b.protocolID == Batch.redis, index >= 0, index <= b.count,
                  length >= 0, bytes != nil || length == 0
            else { return SLUICE_ERROR_INVALID_ARGUMENT }
            let raw = HostAPI.bytes(bytes, length)
            let message: ByteBuffer
            switch type {
            case Int32(SLUICE_REDIS_SIMPLE_STRING), Int32(SLUICE_REDIS_ERROR):
                guard !raw.contains(13), !raw.contains(10) else { return SLUICE_ERROR_INVALID_ARGUMENT }
                let prefix = type == Int32(SLUICE_REDIS_ERROR) ? UInt8(ascii: "-") : UInt8(ascii: "+")
                message = RESPEncoding.line(prefix: prefix, raw, allocator: HostAPI.allocator)
            case Int32(SLUICE_REDIS_BULK_STRING):
                message = RESPEncoding.bulk(raw, allocator: HostAPI.allocator)
            case Int32(SLUICE_REDIS_INTEGER):
                message = RESPEncoding.integer(integer, allocator: HostAPI.allocator)
            case Int32(SLUICE_REDIS_NULL):
                // RESP3 has its own null; a RESP2 client knows only the null bulk string.
                message = HandleTable.current.activeSession?.clientSpeaksRESP3 == true
                    ? HostAPI.resp3Null()
                    : RESPEncoding.nullBulk(allocator: HostAPI.allocator)
            default:
                return SLUICE_ERROR_INVALID_ARGUMENT
            }
            b.put(message, at: index)
            return SLUICE_OK
        }
        // ABI 1.1: change one argument in place, find a command's keys.
        api.redis_set_arg = { batch, index, argument, bytes, length in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_set_arg") else { return SLUICE_ERROR_STATE }
            return HostAPI.splice(b, index, argument, offset: 0, removing: nil, bytes, length)
        }
        api.redis_splice_arg = { batch, index, argument, offset, removing, bytes, length in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_splice_arg") else { return SLUICE_ERROR_STATE }
            return HostAPI.splice(b, index, argument, offset: offset, removing: removing, bytes, length)
        }
        api.redis_keys = { batch, index, out, capacity, outCount in
            guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let b = Batch.from(batch, "redis_keys") else { return SLUICE_ERROR_STATE }
            guard b.kind == Batch.requests, b.protocolID == Batch.redis, index >= 0, index < b.count,
                  out != nil || capacity == 0
            else { return SLUICE_ERROR_INVALID_ARGUMENT }
            var count = 0
            let lookup = b.withMessageBytes(index) { bytes in
                RedisCommandKeys.positions(bytes) { position in
                    if count < capacity { out![count] = position }
                    count += 1
                }
            }
            outCount?.pointee = count
            switch lookup {
            case .found: return SLUICE_OK
            case .unknownCommand: return SLUICE_ERROR_NOT_FOUND
            case .malformed: return SLUICE_ERROR_MALFORMED
            }
        }
    }

    /// redis_set_arg (`removing` nil: the whole argument) and redis_splice_arg.
    private static func splice(_ b: Batch, _ index: Int, _ argument: Int, offset: Int, removing: Int?,
                               _ bytes: UnsafePointer<UInt8>?, _ length: Int) -> Int32 {
        guard b.kind == Batch.requests, b.protocolID == Batch.redis, index >= 0, index < b.count, argument >= 0,
              length >= 0, bytes != nil || length == 0
        else { return SLUICE_ERROR_INVALID_ARGUMENT }
        let replacement = HostAPI.bytes(bytes, length)
        // Built while the old message is still held, so `replacement` may point into it.
        let edited = b.withMessageBytes(index) { message in
            RESPArgumentSplice.splice(message, argument: argument, offset: offset, removing: removing,
                                      replacement: replacement, allocator: allocator)
        }
        guard let edited else { return SLUICE_ERROR_INVALID_ARGUMENT }
        b.put(edited, at: index)
        return SLUICE_OK
    }
}
