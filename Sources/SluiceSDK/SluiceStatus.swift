/// A host function's status (`SLUICE_OK`, `SLUICE_ERROR_STATE`… from the header), returned by every
/// SDK function that can fail, so a failure is never silent.
public struct SluiceStatus: Equatable, CustomStringConvertible {
    /// The header's status code.
    public let code: Int32
    /// The host function that answered, for messages.
    public let function: String

    public init(_ code: Int32, _ function: String) {
        self.code = code
        self.function = function
    }

    public var isOK: Bool { code == SLUICE_OK }

    /// Throws a `SluiceError` unless the status is `SLUICE_OK` (use inside a hook: the call then
    /// fails with the error's message).
    public func check() throws {
        guard isOK else { throw SluiceError(self) }
    }

    public var description: String { "\(function): \(SluiceStatus.name(code))" }

    /// The header's name of a status code.
    public static func name(_ code: Int32) -> String {
        switch code {
        case SLUICE_OK: return "SLUICE_OK"
        case SLUICE_ERROR: return "SLUICE_ERROR"
        case SLUICE_ERROR_INVALID_ARGUMENT: return "SLUICE_ERROR_INVALID_ARGUMENT"
        case SLUICE_ERROR_STATE: return "SLUICE_ERROR_STATE"
        case SLUICE_ERROR_MALFORMED: return "SLUICE_ERROR_MALFORMED"
        case SLUICE_END: return "SLUICE_END"
        case SLUICE_ERROR_NOT_FOUND: return "SLUICE_ERROR_NOT_FOUND"
        case SLUICE_ERROR_TIMEOUT: return "SLUICE_ERROR_TIMEOUT"
        default: return "status \(code)"
        }
    }

    public static func == (a: SluiceStatus, b: SluiceStatus) -> Bool { a.code == b.code }
}

/// An error a transform's hook may throw (the SDK fails the hook's call with `message`: the client
/// sees `-ERR <transform>: message` for every request of the batch), and what the SDK throws for a
/// host function that failed.
public struct SluiceError: Error, CustomStringConvertible {
    public let message: String
    /// The failed host status (`SLUICE_ERROR_*`); `SLUICE_ERROR` for the plugin's own errors.
    public let status: Int32
    /// The host function (and arguments) that failed; empty for the plugin's own errors.
    public let operation: String

    /// The plugin's own error.
    public init(_ message: String) {
        self.message = message
        status = SLUICE_ERROR
        operation = ""
    }

    /// A host function's failure.
    public init(status: Int32, operation: String) {
        self.status = status
        self.operation = operation
        message = "\(operation): \(SluiceStatus.name(status))"
    }

    public init(_ status: SluiceStatus) {
        self.init(status: status.code, operation: status.function)
    }

    public var description: String { message }

    /// Throws unless `status` is SLUICE_OK.
    @inline(__always)
    static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws {
        if status != SLUICE_OK { throw SluiceError(status: status, operation: operation()) }
    }
}
