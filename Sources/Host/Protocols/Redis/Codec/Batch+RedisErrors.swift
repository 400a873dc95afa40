import NIOCore

/// Redis's error replies for requests the host fails (`Batch.errors(_:cqlCode:answering:count:allocator:)`
/// dispatches here for a Redis batch, with `ERR ` in front of the text).
extension Batch {
    /// A response batch holding the same error reply, `-<message>`, for each of `count` requests.
    static func redisErrors(_ message: String, count: Int, allocator: ByteBufferAllocator) -> Batch {
        let reply = redisErrorReply(message, allocator: allocator)
        return Batch(kind: responses, protocolID: redis, messages: Array(repeating: reply, count: count))
    }

    /// The error reply `-<message>`.
    static func redisErrorReply(_ message: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        RESPEncoding.error(message, allocator: allocator)
    }
}
