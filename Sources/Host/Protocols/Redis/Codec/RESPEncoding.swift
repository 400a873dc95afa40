import NIOCore

/// Writes RESP values. Used only when a message is built or changed; untouched messages keep their
/// original bytes.
enum RESPEncoding {
    /// A command as a multibulk array of bulk strings.
    static func command<C: Collection>(_ args: C, allocator: ByteBufferAllocator) -> ByteBuffer
    where C.Element: Collection, C.Element.Element == UInt8 {
        var size = 16
        for a in args { size += a.count + 16 }
        var buffer = allocator.buffer(capacity: size)
        buffer.writeStaticString("*")
        buffer.writeString(String(args.count))
        buffer.writeStaticString("\r\n")
        for a in args {
            buffer.writeStaticString("$")
            buffer.writeString(String(a.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(a)
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }

    static func error(_ message: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: message.utf8.count + 3)
        buffer.writeStaticString("-")
        // An error line may not contain CR or LF.
        for byte in message.utf8 { buffer.writeInteger(byte == 13 || byte == 10 ? UInt8(ascii: " ") : byte) }
        buffer.writeStaticString("\r\n")
        return buffer
    }

    static func line(prefix: UInt8, _ bytes: UnsafeRawBufferPointer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: bytes.count + 3)
        buffer.writeInteger(prefix)
        buffer.writeBytes(bytes)
        buffer.writeStaticString("\r\n")
        return buffer
    }

    static func bulk(_ bytes: UnsafeRawBufferPointer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: bytes.count + 16)
        buffer.writeStaticString("$")
        buffer.writeString(String(bytes.count))
        buffer.writeStaticString("\r\n")
        buffer.writeBytes(bytes)
        buffer.writeStaticString("\r\n")
        return buffer
    }

    static func integer(_ value: Int64, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 24)
        buffer.writeStaticString(":")
        buffer.writeString(String(value))
        buffer.writeStaticString("\r\n")
        return buffer
    }

    static func nullBulk(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 5)
        buffer.writeStaticString("$-1\r\n")
        return buffer
    }
}
