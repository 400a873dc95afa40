import Dispatch
import NIOConcurrencyHelpers
import NIOCore

/// What the host makes of a CQL frame a transform gave as the answer to a request (call_answer,
/// call_respond): the client's driver matches a reply to its request by stream id, so a reply on
/// another stream would never be read (the driver waits for its request until its timeout).
///
/// - Same protocol version: the frame goes out with the request's stream id and the response
///   direction bit (the header is stamped, the body left as it is).
/// - Another protocol version (the body may be encoded differently), or bytes too short for a
///   frame header: the request is answered with an ERROR SERVER_ERROR in its own version and on its
///   stream instead, saying so; the host logs it (at most once a second).
enum CQLAnswerStamp {
    enum Outcome {
        /// The frame already carries the request's version and stream.
        case unchanged
        /// The frame with the request's stream id (and the response direction bit).
        case stamped(ByteBuffer)
        /// The ERROR that answers the request instead, and why.
        case refused(ByteBuffer, String)
    }

    static let headerBytes = 9

    /// The answer `reply` (a frame a transform built) to the request frame `request`.
    static func check(_ reply: ByteBuffer, answering request: ByteBuffer, step: String,
                      allocator: ByteBufferAllocator) -> Outcome {
        guard let (requestByte, _, requestStream) = request.getMultipleIntegers(
                  at: request.readerIndex, as: (UInt8, UInt8, Int16).self),
              let requestVersion = CQLVersion(rawValue: requestByte & 0x7F)
        else { return .unchanged }  // not a request frame the host read: nothing to match
        let expectedByte = requestVersion.rawValue | 0x80
        guard reply.readableBytes >= headerBytes,
              let (replyByte, _, replyStream) = reply.getMultipleIntegers(at: reply.readerIndex,
                                                                        as: (UInt8, UInt8, Int16).self)
        else {
            let why = "sluice: transform \(step) answered a v\(requestVersion.rawValue) request with "
                + "\(reply.readableBytes) bytes, not a CQL frame"
            return .refused(CQLFrameBuilder.error(version: requestVersion, stream: requestStream, code: .serverError,
                                                  message: why, allocator: allocator), why)
        }
        if replyByte == expectedByte, replyStream == requestStream { return .unchanged }
        guard replyByte & 0x7F == requestVersion.rawValue else {
            let why = "sluice: transform \(step) answered a v\(requestVersion.rawValue) request with a "
                + "v\(replyByte & 0x7F) frame"
            return .refused(CQLFrameBuilder.error(version: requestVersion, stream: requestStream, code: .serverError,
                                                  message: why, allocator: allocator), why)
        }
        var stamped = reply
        stamped.setInteger(expectedByte, at: stamped.readerIndex)
        stamped.setInteger(requestStream, at: stamped.readerIndex + 2)
        return .stamped(stamped)
    }

    /// Refusals since the last log line, and when the next line may be written (process-wide).
    private static let logLimit = NIOLockedValueBox((since: 0, next: UInt64(0)))

    /// Logs a refused answer, at most once a second (with how many were refused since).
    static func logRefusal(_ why: String, label: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        let more = logLimit.withLockedValue { limit -> Int? in
            limit.since += 1
            guard now >= limit.next else { return nil }
            limit.next = now + 1_000_000_000
            defer { limit.since = 0 }
            return limit.since - 1
        }
        guard let more else { return }
        let since = more > 0 ? " (\(more) more refused answers in the last second)" : ""
        HostLog.plugins.warning("\(label): \(why); the request was answered with that ERROR instead\(since)")
    }
}
