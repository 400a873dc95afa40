import NIOCore

/// CQL's error replies for requests the host fails (`Batch.errors(_:cqlCode:answering:count:allocator:)`
/// dispatches here for a CQL batch).
extension Batch {
    /// An ERROR frame with `code` and `text` for each of `count` requests of `requests`, in that
    /// request's protocol version and stream id (request i of `requests`; when the batch no longer
    /// has it, because a plugin removed requests, the last one's).
    static func cqlErrors(_ text: String, code: CQLErrorCode, answering requests: Batch, count: Int,
                          allocator: ByteBufferAllocator) -> Batch {
        var replies: [ByteBuffer] = []
        replies.reserveCapacity(count)
        for i in 0..<count {
            replies.append(cqlErrorReply(text, code: code, answering: requests, at: i, allocator: allocator))
        }
        return Batch(kind: responses, protocolID: cql, messages: replies)
    }

    /// The ERROR frame answering request `index` of `requests` (see `cqlErrors`).
    static func cqlErrorReply(_ text: String, code: CQLErrorCode, answering requests: Batch, at index: Int,
                              allocator: ByteBufferAllocator) -> ByteBuffer {
        let identity = requests.count == 0 ? CQLRequestIdentity.unknown
            : CQLRequestIdentity(frame: requests.messages[min(index, requests.count - 1)])
        return CQLFrameBuilder.error(version: identity.version, stream: identity.stream, code: code, message: text,
                                     allocator: allocator)
    }
}
