import NIOCore

/// Changes one argument of a multibulk command without re-encoding the others (`redis_set_arg`,
/// `redis_splice_arg`): the new message is written once into a buffer of its final size, the
/// bytes before and after the argument copied as they are.
enum RESPArgumentSplice {
    /// The command `message` with bytes [offset, offset + removing) of argument `argument` replaced
    /// by `replacement` (`removing` nil: up to the argument's end); nil when the argument or the
    /// range does not exist. `replacement` may point into `message` (it is read before the caller
    /// lets `message` go).
    static func splice(_ message: UnsafeRawBufferPointer, argument: Int, offset: Int, removing: Int?,
                       replacement: UnsafeRawBufferPointer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard argument >= 0, offset >= 0, (removing ?? 0) >= 0, message.count > 0,
              let headerEnd = RESPLine.findCRLF(message, from: 1), headerEnd > 0 else { return nil }
        // Where the argument's "$len\r\n" starts, where its data starts, and how long it is.
        var found: (header: Int, start: Int, length: Int)?
        var nextHeader = headerEnd + 2
        RESPCommandReader.forEachArgument(message) { index, start, length in
            if index == argument {
                found = (nextHeader, start, length)
                return false
            }
            nextHeader = start + length + 2
            return true
        }
        guard let (header, start, length) = found, offset <= length, start + length + 2 <= message.count else { return nil }
        let removing = removing ?? length - offset
        guard removing <= length - offset else { return nil }
        let newLength = length - removing + replacement.count
        let lengthText = String(newLength)
        let tail = start + length  // the argument's CRLF and everything after it
        var out = allocator.buffer(capacity: header + 1 + lengthText.utf8.count + 2 + newLength + (message.count - tail))
        out.writeBytes(UnsafeRawBufferPointer(rebasing: message[0..<header]))
        out.writeInteger(UInt8(ascii: "$"))
        out.writeString(lengthText)
        out.writeStaticString("\r\n")
        out.writeBytes(UnsafeRawBufferPointer(rebasing: message[start..<start + offset]))
        out.writeBytes(replacement)
        out.writeBytes(UnsafeRawBufferPointer(rebasing: message[start + offset + removing..<tail]))
        out.writeBytes(UnsafeRawBufferPointer(rebasing: message[tail..<message.count]))
        return out
    }
}
