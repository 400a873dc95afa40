import NIOCore

/// The protocol version and stream id of a CQL request frame: what a reply to it must carry.
/// Read from the first four bytes only, so it works on any frame a batch holds.
struct CQLRequestIdentity: Equatable {
    let version: CQLVersion
    let stream: Int16

    /// For a reply whose request is not known (v4, stream 0).
    static let unknown = CQLRequestIdentity(version: .v4, stream: 0)

    init(version: CQLVersion, stream: Int16) {
        self.version = version
        self.stream = stream
    }

    init(frame: ByteBuffer) {
        guard let (versionByte, _, stream) = frame.getMultipleIntegers(at: frame.readerIndex, as: (UInt8, UInt8, Int16).self),
              let version = CQLVersion(rawValue: versionByte & 0x7F)
        else {
            self = .unknown
            return
        }
        self.init(version: version, stream: stream)
    }
}
