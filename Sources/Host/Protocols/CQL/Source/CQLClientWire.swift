import NIOCore

/// The wire side of one client connection of a `cassandra` source: bytes from the client in, one
/// whole uncompressed frame per request out; uncompressed reply frames in, the bytes the client
/// expects out.
///
/// Inside Sluice a CQL message is always one complete frame with the COMPRESSION flag cleared (see
/// HELPERS.md, "A CQL message in a Batch"). On the wire the framing follows `CQLFraming`: bare and
/// uncompressed until Sluice answers STARTUP; then, from the next frame in both directions, v4
/// bodies compressed as STARTUP asked (LZ4 or Snappy) or v5 segments (LZ4 or not).
///
/// States, in order: `version == nil` (nothing read yet: any supported version is taken and fixes
/// the connection's), then `inbound == .handshake`, then switched (`startupAnswered`), inbound at
/// once and outbound once the answer to STARTUP was encoded. Never traps on input: everything wrong
/// is a thrown `CQLProtocolViolation`, answered with `errorFrame` (encoded like any reply).
struct CQLClientWire {
    /// The versions accepted in the first frame.
    let supportedVersions: [CQLVersion]
    /// Largest frame accepted (header and body), compressed or not, and largest body once
    /// decompressed (a v5 frame split over segments included).
    let maxFrameBytes: Int
    /// How frames from the client travel.
    private(set) var inbound: CQLFraming = .handshake
    /// How frames to the client travel: as `inbound`, once the STARTUP answer went out.
    private(set) var outbound: CQLFraming = .handshake
    /// The stream and opcode of the STARTUP answer whose encoding switches `outbound`.
    private var outboundSwitch: (stream: Int16, opcode: UInt8)?
    /// The connection's version, fixed by its first frame.
    private(set) var version: CQLVersion?
    /// What STARTUP asked for (applies once the framing switched).
    private(set) var compression: CQLCompression?
    private var scanner: CQLFrameScanner
    /// With segments: bytes at the front of the caller's input that are whole frames already taken
    /// out of a segment (see `keepUndelivered`).
    private var bareAhead = 0
    /// With segments: the inbound reader and the outbound writer.
    private var segmentReader: CQLSegmentReader?
    private var segmentWriter: CQLSegmentWriter?
    private let allocator: ByteBufferAllocator

    init(maxFrameBytes: Int, supportedVersions: [CQLVersion] = [.v4, .v5],
         allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxFrameBytes = maxFrameBytes
        self.supportedVersions = supportedVersions
        self.allocator = allocator
        scanner = CQLFrameScanner(direction: .requests, maxFrameBytes: maxFrameBytes,
                                  supportedVersions: supportedVersions)
    }

    // MARK: inbound

    /// Whether the last frame `nextRequest` returned is, byte for byte, the bytes it took off the
    /// front of `input` (a bare uncompressed frame), rather than rebuilt or taken out of segments.
    private(set) var lastRequestAsReceived = false

    /// The next whole request frame at the front of `input` (taken off it), uncompressed and with
    /// the COMPRESSION flag cleared; nil when more bytes are needed (`input` keeps what it has not
    /// consumed: with segments, the segments it read are kept here). A bare uncompressed frame is a
    /// zero-copy slice of `input`.
    mutating func nextRequest(_ input: inout ByteBuffer) throws(CQLProtocolViolation) -> CQLFrame? {
        if version == nil, let first = input.getInteger(at: input.readerIndex, as: UInt8.self),
           let opening = CQLVersion(rawValue: first & 0x7F), supportedVersions.contains(opening) {
            // The first byte fixes the version, so that even a first frame refused for its size or
            // body is answered in the client's version.
            version = opening
            scanner.negotiatedVersion = opening
        }
        let frame: CQLFrame
        if bareAhead > 0 {
            frame = try nextFrameAhead(&input)
        } else if segmentReader != nil {
            guard try splitFrameIsWhole(input), let read = try segmentReader!.nextFrame(&input) else { return nil }
            frame = read
            keepUndelivered(&input)
        } else {
            guard let read = try scanner.nextFrame(&input) else { return nil }
            frame = read
        }
        lastRequestAsReceived = segmentReader == nil && !frame.header.flags.contains(.compression)
        guard frame.header.flags.contains(.compression) else { return frame }
        return try uncompressed(frame)
    }

    /// Whether the segments at the front of `input` may be taken now: a self-contained one always
    /// (the reader waits for all its bytes itself); the first of a frame split across several only
    /// once all of them are there. Until then they stay in the caller's buffer, where the source's
    /// request budget counts them and its request deadline runs. A frame announced over the limit
    /// is refused at its first segment. The first segment is decoded (CRC, LZ4) once, and each
    /// later segment header read once, however many reads the frame takes: `splitProgress` keeps
    /// how far the last call got (the caller's buffer keeps those bytes in front until the frame
    /// is taken, so the offsets stay valid).
    private mutating func splitFrameIsWhole(_ input: ByteBuffer) throws(CQLProtocolViolation) -> Bool {
        let codec = segmentReader!.codec
        var progress: SplitProgress
        if let kept = splitProgress {
            progress = kept
        } else {
            guard segmentReader!.isBetweenFrames, let first = try codec.peekHeader(input), !first.isSelfContained else {
                return true
            }
            var probe = input
            guard let segment = try codec.decode(&probe) else { return false }
            splitSegmentHeadersRead += 1
            guard try scanner.scan(segment.payload) == nil,
                  let length = segment.payload.getInteger(at: segment.payload.readerIndex + 5, as: Int32.self)
            else { return true }  // a whole frame in it, or not even a header: the reader says what it is
            progress = SplitProgress(frameLength: CQLFrameHeader.size + Int(length),
                                     frameBytesSeen: segment.payload.readableBytes, wireBytesSeen: first.totalLength)
        }
        while progress.frameBytesSeen < progress.frameLength {
            guard let next = try codec.peekHeader(input, offset: progress.wireBytesSeen),
                  input.readableBytes - progress.wireBytesSeen >= next.totalLength else {
                splitProgress = progress
                return false
            }
            splitSegmentHeadersRead += 1
            if next.isSelfContained { break }  // the reader refuses it
            progress.frameBytesSeen += next.frameBytes
            progress.wireBytesSeen += next.totalLength
        }
        splitProgress = nil
        return true
    }

    /// How far `splitFrameIsWhole` got through the segments of a split frame still arriving.
    private struct SplitProgress {
        /// The whole frame's length, from its header in the first segment.
        let frameLength: Int
        /// Frame bytes in the whole segments seen so far.
        var frameBytesSeen: Int
        /// Wire bytes of those segments, from the front of the caller's input.
        var wireBytesSeen: Int
    }

    private var splitProgress: SplitProgress?
    /// Whole segments `splitFrameIsWhole` has read the header of (for tests: it stays linear in the
    /// segments of a split frame, however many reads they arrive in).
    private(set) var splitSegmentHeadersRead = 0

    /// The other frames of a self-contained segment that held several go back in front of `input`
    /// as bare frames (`bareAhead` bytes), so that the caller's buffer holds every request not
    /// handed out yet: it reads on while it has bytes, and requests it holds back (its in-flight
    /// limit) wait there, not here.
    private mutating func keepUndelivered(_ input: inout ByteBuffer) {
        var undelivered = segmentReader!.takeUndelivered()
        guard undelivered.readableBytes > 0 else { return }
        bareAhead = undelivered.readableBytes
        if input.readableBytes > 0 {
            undelivered.reserveCapacity(minimumWritableBytes: input.readableBytes)
            undelivered.writeImmutableBuffer(input)
        }
        input = undelivered
    }

    /// The next of the bare frames `keepUndelivered` put in front of `input`; they were checked as a
    /// whole segment (CRC), each frame is checked here as any other. Scanned in place: a frame is
    /// whole only if it ends within those bytes (its segment), whatever follows them in `input`.
    private mutating func nextFrameAhead(_ input: inout ByteBuffer) throws(CQLProtocolViolation) -> CQLFrame {
        guard input.readableBytes >= bareAhead else {
            throw CQLProtocolViolation(.malformed, "sluice: the frames taken out of a segment are gone")
        }
        guard bareAhead >= CQLFrameHeader.size, let header = try scanner.scan(input), header.frameLength <= bareAhead else {
            throw CQLProtocolViolation(.malformed, "a self-contained segment ends inside a frame")
        }
        bareAhead -= header.frameLength
        return CQLFrame(header: header, bytes: input.readSlice(length: header.frameLength)!)
    }

    /// `frame` with its body decompressed and the COMPRESSION flag cleared. A v5 frame (inside a
    /// segment) has no compressed bodies of its own: its flag is cleared and its body kept.
    private func uncompressed(_ frame: CQLFrame) throws(CQLProtocolViolation) -> CQLFrame {
        var header = frame.header
        header.flags.remove(.compression)
        var body: ByteBuffer
        if header.version.usesSegments {
            body = frame.body
        } else {
            body = try frame.decompressedBody(inbound.bodyCompression,
                                              maxBytes: maxFrameBytes - CQLFrameHeader.size, allocator: allocator)
        }
        header.bodyLength = body.readableBytes
        var bytes = allocator.buffer(capacity: CQLFrameHeader.size + body.readableBytes)
        header.write(to: &bytes)
        bytes.writeBuffer(&body)
        return CQLFrame(header: header, bytes: bytes)
    }

    // MARK: the switch

    /// STARTUP asked for `compression` (already checked to be available in the connection's
    /// version) and Sluice answers it with `answer`, on `stream`: a READY or an AUTHENTICATE switches
    /// the inbound framing at once (the client sends nothing more before it reads the answer, and
    /// all it sends after is in the new framing), and the outbound framing once that answer itself
    /// was encoded (bare: see `encode`). Anything else changes nothing.
    mutating func startupAnswered(with answer: CQLOpcode, stream: Int16, compression: CQLCompression?) {
        guard let version, inbound == .handshake else { return }
        let next = inbound.afterStartupAnswer(answer, version: version, compression: compression)
        guard next != inbound else { return }
        self.compression = compression
        inbound = next
        if let codec = next.segmentCodec {
            segmentReader = CQLSegmentReader(codec: codec, scanner: scanner)
        }
        outboundSwitch = (stream, answer.rawValue)
    }

    // MARK: outbound

    /// Appends the wire bytes of one uncompressed frame (a reply, an answer given here, an event)
    /// to `output`. With segments the frame may wait in the segment writer: end every run of writes
    /// with `flush`. The answer to STARTUP goes out bare and switches the outbound framing after it.
    mutating func encode(_ frame: ByteBuffer, into output: inout ByteBuffer) {
        if segmentWriter != nil {
            segmentWriter!.append(frame: frame, into: &output)
            return
        }
        if let compression = outbound.bodyCompression {
            output.writeImmutableBuffer(CQLFrameBuilder.compressed(frame, with: compression, allocator: allocator))
            return
        }
        output.writeImmutableBuffer(frame)
        if let (stream, opcode) = outboundSwitch,
           frame.getInteger(at: frame.readerIndex + 2, as: Int16.self) == stream,
           frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) == opcode {
            outboundSwitch = nil
            outbound = inbound
            if let codec = outbound.segmentCodec {
                segmentWriter = CQLSegmentWriter(codec: codec, allocator: allocator)
            }
        }
    }

    /// Whether frames go to the client exactly as they are (no compression, no segments, no switch
    /// pending): then they need no `encode` and can be written as they are, without a copy.
    var outboundIsBare: Bool {
        outboundSwitch == nil && segmentWriter == nil && outbound.bodyCompression == nil
    }

    /// Writes whatever the segment writer still holds (one self-contained segment).
    mutating func flush(into output: inout ByteBuffer) {
        segmentWriter?.flush(into: &output)
    }

    /// The wire bytes of one frame on its own (`encode` then `flush`).
    mutating func wireBytes(of frame: ByteBuffer) -> ByteBuffer {
        var output = allocator.buffer(capacity: frame.readableBytes + 16)
        encode(frame, into: &output)
        flush(into: &output)
        return output
    }

    /// The ERROR frame answering `violation` (PROTOCOL_ERROR, or the version rejection drivers
    /// downgrade on, which is only ever the answer to a first frame and so goes out bare). The
    /// connection closes after it.
    func errorFrame(for violation: CQLProtocolViolation) -> ByteBuffer {
        CQLFrameBuilder.error(for: violation, version: replyVersion, supported: supportedVersions, allocator: allocator)
    }

    /// The version replies are written in: the connection's, or the highest supported one before
    /// a frame fixed it.
    var replyVersion: CQLVersion { version ?? supportedVersions.max() ?? .v4 }
}
