import NIOCore

/// Builds whole frames: the responses Sluice answers itself (ERROR, RESULT Void, RESULT Rows) and
/// the QUERY request. Bodies are written uncompressed; a v4 connection with compression calls
/// `compressed(_:with:)` on the result, a v5 connection hands the frame to its segment encoder.
public enum CQLFrameBuilder {
    /// A frame of `version` with `body` written by `writeBody` after the header.
    public static func frame(version: CQLVersion, isResponse: Bool, flags: CQLFrameFlags = [], stream: Int16,
                             opcode: CQLOpcode, allocator: ByteBufferAllocator = ByteBufferAllocator(),
                             capacity: Int = 64, _ writeBody: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: CQLFrameHeader.size + capacity)
        let start = buffer.writerIndex
        CQLFrameHeader(version: version, isResponse: isResponse, flags: flags, stream: stream, opcode: opcode,
                       bodyLength: 0).write(to: &buffer)
        writeBody(&buffer)
        CQLFrameHeader.patchBodyLength(buffer.writerIndex - start - CQLFrameHeader.size, in: &buffer, headerAt: start)
        return buffer
    }

    /// An ERROR response: `code` and `message`, no code-specific fields (use it for codes that have
    /// none: SERVER_ERROR, PROTOCOL_ERROR, BAD_CREDENTIALS, OVERLOADED, IS_BOOTSTRAPPING,
    /// TRUNCATE_ERROR, SYNTAX_ERROR, UNAUTHORIZED, INVALID, CONFIG_ERROR).
    public static func error(version: CQLVersion, stream: Int16, code: CQLErrorCode, message: String,
                             allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(version: version, isResponse: true, stream: stream, opcode: .error, allocator: allocator,
              capacity: message.utf8.count + 6) { body in
            body.writeInteger(code.rawValue)
            body.writeCQLString(message)
        }
    }

    /// The ERROR frame for a protocol violation: PROTOCOL_ERROR on the violation's stream (0 when the
    /// header did not get that far). An unsupported version gets the reply drivers downgrade on
    /// (`CQLVersionNegotiation`); otherwise the frame is written in `version`, the connection's.
    public static func error(for violation: CQLProtocolViolation, version: CQLVersion,
                             supported: [CQLVersion] = [.v4, .v5],
                             allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        if case .unsupportedVersion(let raw) = violation.kind {
            return CQLVersionNegotiation.rejection(of: raw, supported: supported, stream: violation.stream ?? 0,
                                                   allocator: allocator)
        }
        return error(version: version, stream: violation.stream ?? 0, code: .protocolError,
                     message: violation.message, allocator: allocator)
    }

    /// RESULT Void.
    public static func resultVoid(version: CQLVersion, stream: Int16,
                                  allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(version: version, isResponse: true, stream: stream, opcode: .result, allocator: allocator, capacity: 4) {
            $0.writeInteger(CQLResultKind.void.rawValue)
        }
    }

    /// RESULT Rows with a global table spec, `columns` (name and type), and `rows` of cells (each
    /// row must have one value per column; nil is null). No paging state.
    public static func resultRows(version: CQLVersion, stream: Int16, keyspace: String, table: String,
                                  columns: [(name: String, type: CQLDataType)], rows: [[ByteBuffer?]],
                                  allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(version: version, isResponse: true, stream: stream, opcode: .result, allocator: allocator, capacity: 256) { body in
            body.writeInteger(CQLResultKind.rows.rawValue)
            body.writeInteger(CQLRowsMetadata.Flags.globalTableSpec.rawValue)
            body.writeInteger(Int32(columns.count))
            body.writeCQLString(keyspace)
            body.writeCQLString(table)
            for column in columns {
                body.writeCQLString(column.name)
                column.type.write(to: &body)
            }
            body.writeInteger(Int32(rows.count))
            for row in rows {
                precondition(row.count == columns.count, "a RESULT Rows row needs one cell per column")
                for cell in row { body.writeCQLBytes(cell) }
            }
        }
    }

    /// A QUERY request: `query` at `consistency` with positional `values` (none: no Values flag),
    /// an optional page size and, on v5, an optional keyspace.
    public static func query(version: CQLVersion, stream: Int16, query: String, consistency: CQLConsistency = .one,
                             values: [CQLValue] = [], pageSize: Int32? = nil, keyspace: String? = nil,
                             allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(version: version, isResponse: false, stream: stream, opcode: .query, allocator: allocator,
              capacity: query.utf8.count + 32) { body in
            body.writeCQLLongString(query)
            var flags: CQLQueryFlags = []
            if !values.isEmpty { flags.insert(.values) }
            if pageSize != nil { flags.insert(.pageSize) }
            if keyspace != nil, version.hasV5Messages { flags.insert(.keyspace) }
            body.writeInteger(consistency.rawValue)
            flags.write(to: &body, version: version)
            if !values.isEmpty {
                body.writeInteger(UInt16(values.count))
                for value in values { body.writeCQLValue(value) }
            }
            if let pageSize { body.writeInteger(pageSize) }
            if let keyspace, version.hasV5Messages { body.writeCQLString(keyspace) }
        }
    }

    /// The v3/v4 frame `frame` with its body compressed and the `.compression` flag set (an empty
    /// body stays as it is, as drivers do).
    public static func compressed(_ frame: ByteBuffer, with compression: CQLCompression,
                                  allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        guard frame.readableBytes > CQLFrameHeader.size else { return frame }
        let body = frame.getSlice(at: frame.readerIndex + CQLFrameHeader.size,
                                  length: frame.readableBytes - CQLFrameHeader.size)!
        var packed = compression.compressBody(body, allocator: allocator)
        var output = allocator.buffer(capacity: CQLFrameHeader.size + packed.readableBytes)
        output.writeImmutableBuffer(frame.getSlice(at: frame.readerIndex, length: CQLFrameHeader.size)!)
        let flags = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self)! | CQLFrameFlags.compression.rawValue
        output.setInteger(flags, at: output.readerIndex + 1)
        CQLFrameHeader.patchBodyLength(packed.readableBytes, in: &output, headerAt: output.readerIndex)
        output.writeBuffer(&packed)
        return output
    }
}
