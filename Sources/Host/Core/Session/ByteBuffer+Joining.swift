import NIOCore

extension ByteBuffer {
    /// The bytes to scan after a read: the incomplete frame left over from earlier reads (taken out
    /// of `leftover`) followed by `incoming`, or `incoming` alone (no copy) when nothing was left.
    ///
    /// The leftover is cut down to its unread bytes first. Its storage usually still backs frames
    /// handed on (replies waiting to be written), so appending copies it, and NIO copies the whole
    /// slice a buffer views: without the cut every read that ends inside a frame would carry all
    /// earlier bytes along, each copy larger than the last and each kept alive by its frames.
    /// When nothing else holds the storage (a large value arriving over many reads), the append
    /// happens in place, growing geometrically.
    static func joining(_ leftover: inout ByteBuffer?, _ incoming: ByteBuffer) -> ByteBuffer {
        guard var joined = leftover else { return incoming }
        leftover = nil
        joined = joined.slice()
        var incoming = incoming
        joined.writeBuffer(&incoming)
        return joined
    }
}
