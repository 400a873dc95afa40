import NIOCore
import PluginABI

/// The host functions ABI 1.1 adds for everyday plugin jobs that are not one protocol's: read the
/// client's session facts, answer some requests of a batch. (Its Redis ones, changing one argument
/// in place and finding a command's keys, are in Protocols/Redis/PluginAccess/HostAPI+Redis.swift.)
extension HostAPI {
    static func addReach(to api: inout sluice_host_api) {
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
}
