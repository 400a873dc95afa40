import NIOCore
import PluginABI

/// The host functions ABI 1.1 adds for everyday plugin jobs: change one argument in place, find a
/// command's keys, read the client's session facts, answer some requests of a batch.
extension HostAPI {
    static func addReach(to api: inout sluice_host_api) {
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
        api.get_property = { env, property, outView, outInt in
            guard let env else { return SLUICE_ERROR_INVALID_ARGUMENT }
            outView?.pointee = sluice_host_view(ptr: nil, len: 0)
            let instanceEnv = InstanceEnv.from(env)
            guard !instanceEnv.isClosed else { return SLUICE_ERROR_STATE }
            let session = instanceEnv.session
            let facts = session.facts
            func integer(_ value: Int) -> Int32 {
                guard let outInt else { return SLUICE_ERROR_INVALID_ARGUMENT }
                outInt.pointee = Int64(value)
                return SLUICE_OK
            }
            func bytes(_ fact: FactBytes?) -> Int32 {
                guard let outView else { return SLUICE_ERROR_INVALID_ARGUMENT }
                guard let fact else { return SLUICE_ERROR_NOT_FOUND }
                outView.pointee = sluice_host_view(ptr: fact.pointer, len: fact.count)
                return SLUICE_OK
            }
            switch property {
            case SLUICE_PROPERTY_PROTOCOL: return integer(Int(facts.protocolID))
            case SLUICE_PROPERTY_PROTOCOL_VERSION:
                return integer(facts.protocolID == Batch.cql ? facts.cql.version : facts.redis.protocolVersion)
            case SLUICE_PROPERTY_KEYSPACE: return bytes(facts.cql.keyspace)
            case SLUICE_PROPERTY_USER: return bytes(facts.user)
            case SLUICE_PROPERTY_DATABASE: return integer(facts.redis.database)
            case SLUICE_PROPERTY_CLIENT_NAME: return bytes(facts.redis.clientName)
            case SLUICE_PROPERTY_SOURCE_NAME: return bytes(facts.sourceName)
            case SLUICE_PROPERTY_CLIENT_ADDRESS:
                guard let outView else { return SLUICE_ERROR_INVALID_ARGUMENT }
                outView.pointee = sluice_host_view(ptr: UnsafePointer(session.clientAddress.baseAddress),
                                                   len: session.clientAddress.count - 1)
                return SLUICE_OK
            default:
                return SLUICE_ERROR_NOT_FOUND
            }
        }
        api.call_answer = { call, index, replies, replyIndex in
            guard let call, let replies else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let resolved = Call.from(call, "call_answer"), let b = Batch.from(replies, "call_answer")
            else { return SLUICE_ERROR_STATE }
            return resolved.answer(index, from: b, replyIndex)
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
