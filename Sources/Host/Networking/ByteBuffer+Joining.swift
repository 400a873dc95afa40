import NIOCore

extension ByteBuffer {
    /// The bytes to scan after a read: the incomplete frame left over from earlier reads (taken out
    /// of `leftover`) followed by `incoming`, or `incoming` alone (no copy) when nothing was left.
    static func joining(_ leftover: inout ByteBuffer?, _ incoming: ByteBuffer) -> ByteBuffer {
        guard var joined = leftover else { return incoming }
        leftover = nil
        var incoming = incoming
        joined.writeBuffer(&incoming)
        return joined
    }
}
