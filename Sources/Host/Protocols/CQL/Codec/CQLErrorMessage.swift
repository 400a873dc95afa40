import NIOCore

/// An ERROR message: <code [int]><message [string]> and the fields its code adds.
public struct CQLErrorMessage: Sendable {
    /// The fields a code adds after the message.
    public enum Details: Equatable, Sendable {
        case none
        /// UNAVAILABLE: the consistency, replicas required, replicas alive.
        case unavailable(consistency: CQLConsistency, required: Int32, alive: Int32)
        /// WRITE_TIMEOUT: consistency, acknowledgements received, needed, the write type, and in v5
        /// the contentions of a CAS write.
        case writeTimeout(consistency: CQLConsistency, received: Int32, blockFor: Int32, writeType: String, contentions: UInt16?)
        /// READ_TIMEOUT: consistency, responses received, needed, whether the data was among them.
        case readTimeout(consistency: CQLConsistency, received: Int32, blockFor: Int32, dataPresent: Bool)
        /// READ_FAILURE: like READ_TIMEOUT plus the failures (a count up to v4, a reason per node in v5).
        case readFailure(consistency: CQLConsistency, received: Int32, blockFor: Int32, failures: Failures, dataPresent: Bool)
        /// WRITE_FAILURE: like WRITE_TIMEOUT's first fields plus the failures and the write type.
        case writeFailure(consistency: CQLConsistency, received: Int32, blockFor: Int32, failures: Failures, writeType: String)
        /// CAS_WRITE_UNKNOWN (v5).
        case casWriteUnknown(consistency: CQLConsistency, received: Int32, blockFor: Int32)
        /// FUNCTION_FAILURE: the function's keyspace, name and argument types.
        case functionFailure(keyspace: String, function: String, argumentTypes: [String])
        /// ALREADY_EXISTS: the keyspace and the table (empty when a keyspace already exists).
        case alreadyExists(keyspace: String, table: String)
        /// UNPREPARED: the id the server does not know.
        case unprepared(id: ByteBuffer)
    }

    /// How READ_FAILURE and WRITE_FAILURE count failures.
    public enum Failures: Equatable, Sendable {
        /// v3/v4: the number of replicas that failed.
        case count(Int32)
        /// v5: each failing node and its failure code.
        case reasons([Reason])

        public struct Reason: Equatable, Sendable {
            public let node: [UInt8]
            public let code: UInt16
        }

        public var count: Int {
            switch self {
            case .count(let count): return Int(count)
            case .reasons(let reasons): return reasons.count
            }
        }
    }

    public let code: CQLErrorCode
    public let message: String
    public let details: Details

    public init(message body: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(body)
        code = CQLErrorCode(rawValue: try reader.readInt())
        message = try reader.readText()
        details = try Self.readDetails(code, version: version, from: &reader)
    }

    private static func readFailures(_ version: CQLVersion, from reader: inout CQLBodyReader) throws(CQLProtocolViolation) -> Failures {
        guard version.hasV5Messages else { return .count(try reader.readInt()) }
        let count = try reader.readInt()
        guard count >= 0, Int(count) <= reader.remaining / 7 else {
            throw CQLProtocolViolation(.malformed, "invalid failure reason count \(count)")
        }
        var reasons: [Failures.Reason] = []
        reasons.reserveCapacity(Int(count))
        for _ in 0..<Int(count) {
            let node = try reader.readInetAddress()
            reasons.append(Failures.Reason(node: node, code: try reader.readShort()))
        }
        return .reasons(reasons)
    }

    private static func readDetails(_ code: CQLErrorCode, version: CQLVersion,
                                    from reader: inout CQLBodyReader) throws(CQLProtocolViolation) -> Details {
        switch code {
        case .unavailable:
            let consistency = try reader.readConsistency()
            let required = try reader.readInt()
            return .unavailable(consistency: consistency, required: required, alive: try reader.readInt())
        case .writeTimeout:
            let consistency = try reader.readConsistency()
            let received = try reader.readInt()
            let blockFor = try reader.readInt()
            let writeType = try reader.readText()
            let contentions = version.hasV5Messages && writeType == "CAS" ? try reader.readShort() : nil
            return .writeTimeout(consistency: consistency, received: received, blockFor: blockFor,
                                 writeType: writeType, contentions: contentions)
        case .readTimeout:
            let consistency = try reader.readConsistency()
            let received = try reader.readInt()
            let blockFor = try reader.readInt()
            return .readTimeout(consistency: consistency, received: received, blockFor: blockFor,
                                dataPresent: try reader.readByte() != 0)
        case .readFailure:
            let consistency = try reader.readConsistency()
            let received = try reader.readInt()
            let blockFor = try reader.readInt()
            let failures = try readFailures(version, from: &reader)
            return .readFailure(consistency: consistency, received: received, blockFor: blockFor,
                                failures: failures, dataPresent: try reader.readByte() != 0)
        case .writeFailure:
            let consistency = try reader.readConsistency()
            let received = try reader.readInt()
            let blockFor = try reader.readInt()
            let failures = try readFailures(version, from: &reader)
            return .writeFailure(consistency: consistency, received: received, blockFor: blockFor,
                                 failures: failures, writeType: try reader.readText())
        case .casWriteUnknown:
            let consistency = try reader.readConsistency()
            let received = try reader.readInt()
            return .casWriteUnknown(consistency: consistency, received: received, blockFor: try reader.readInt())
        case .functionFailure:
            let keyspace = try reader.readText()
            let function = try reader.readText()
            return .functionFailure(keyspace: keyspace, function: function, argumentTypes: try reader.readStringList())
        case .alreadyExists:
            let keyspace = try reader.readText()
            return .alreadyExists(keyspace: keyspace, table: try reader.readText())
        case .unprepared:
            return .unprepared(id: try reader.readShortBytes())
        default:
            return .none
        }
    }
}
