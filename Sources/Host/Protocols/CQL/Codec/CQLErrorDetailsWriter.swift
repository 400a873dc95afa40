import NIOCore

extension CQLErrorMessage.Details {
    /// Writes the fields after the message, as `version` lays them out (the counterpart of the
    /// reader in `CQLErrorMessage`). Failures given as reasons are written as their count before v5,
    /// and a count is written as no reasons in v5 (the per-node codes are unknown then).
    public func write(to buffer: inout ByteBuffer, version: CQLVersion) {
        func failures(_ failures: CQLErrorMessage.Failures) {
            guard version.hasV5Messages else {
                buffer.writeInteger(Int32(failures.count))
                return
            }
            let reasons: [CQLErrorMessage.Failures.Reason]
            if case .reasons(let list) = failures { reasons = list } else { reasons = [] }
            buffer.writeInteger(Int32(reasons.count))
            for reason in reasons {
                buffer.writeInteger(UInt8(reason.node.count))
                buffer.writeBytes(reason.node)
                buffer.writeInteger(reason.code)
            }
        }
        switch self {
        case .none:
            break
        case .unavailable(let consistency, let required, let alive):
            buffer.writeMultipleIntegers(consistency.rawValue, required, alive)
        case .writeTimeout(let consistency, let received, let blockFor, let writeType, let contentions):
            buffer.writeMultipleIntegers(consistency.rawValue, received, blockFor)
            buffer.writeCQLString(writeType)
            if version.hasV5Messages, writeType == "CAS" { buffer.writeInteger(contentions ?? 0) }
        case .readTimeout(let consistency, let received, let blockFor, let dataPresent):
            buffer.writeMultipleIntegers(consistency.rawValue, received, blockFor, UInt8(dataPresent ? 1 : 0))
        case .readFailure(let consistency, let received, let blockFor, let list, let dataPresent):
            buffer.writeMultipleIntegers(consistency.rawValue, received, blockFor)
            failures(list)
            buffer.writeInteger(UInt8(dataPresent ? 1 : 0))
        case .writeFailure(let consistency, let received, let blockFor, let list, let writeType):
            buffer.writeMultipleIntegers(consistency.rawValue, received, blockFor)
            failures(list)
            buffer.writeCQLString(writeType)
        case .casWriteUnknown(let consistency, let received, let blockFor):
            buffer.writeMultipleIntegers(consistency.rawValue, received, blockFor)
        case .functionFailure(let keyspace, let function, let argumentTypes):
            buffer.writeCQLString(keyspace)
            buffer.writeCQLString(function)
            buffer.writeCQLStringList(argumentTypes)
        case .alreadyExists(let keyspace, let table):
            buffer.writeCQLString(keyspace)
            buffer.writeCQLString(table)
        case .unprepared(let id):
            buffer.writeCQLShortBytes(id)
        }
    }
}

extension CQLFrameBuilder {
    /// An ERROR response with the fields `code` carries (`details` must be the case for `code`:
    /// `.unprepared(id:)` with UNPREPARED, and so on; `.none` for codes without fields).
    public static func error(version: CQLVersion, stream: Int16, code: CQLErrorCode, message: String,
                             details: CQLErrorMessage.Details,
                             allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(version: version, isResponse: true, stream: stream, opcode: .error, allocator: allocator,
              capacity: message.utf8.count + 32) { body in
            body.writeInteger(code.rawValue)
            body.writeCQLString(message)
            details.write(to: &body, version: version)
        }
    }
}
