@_exported import PluginABI

/// The host function table, stored once by `SluicePlugin.initialize` (on the main thread, before any
/// other hook runs) and never changed afterwards. Read through `Host.api`.
@usableFromInline
nonisolated(unsafe) var _sluiceHostAPI: UnsafePointer<sluice_host_api>?

/// The host that loaded this plugin: its function table and version.
///
/// Every SDK type calls the host through `Host.api`; plugin code only needs it to call a host
/// function the SDK does not wrap (for example one added by a newer minor version of the ABI — check
/// `Host.abiMinor` first).
public enum Host {
    /// The host function table. Valid for the life of the process once the plugin is initialised.
    @inlinable
    public static var api: UnsafePointer<sluice_host_api> { _sluiceHostAPI.unsafelyUnwrapped }

    /// True once `SluicePlugin.initialize` stored the table.
    public static var isInitialized: Bool { _sluiceHostAPI != nil }

    /// ABI major version the host speaks (always `SLUICE_ABI_VERSION_MAJOR` for a loaded plugin).
    public static var abiMajor: UInt32 { api.pointee.abi_major }

    /// ABI minor version the host speaks: a function added in minor N may be called only if this is >= N.
    public static var abiMinor: UInt32 { api.pointee.abi_minor }

    /// The host's version, e.g. "0.1.0".
    public static var version: String {
        guard let text = api.pointee.host_version else { return "" }
        return String(cString: text)
    }
}

// MARK: - Logging

/// A log level of the host's logger (`SLUICE_LOG_*`).
public enum LogLevel: Int32 {
    case trace = 0, debug, info, warning, error
}

/// Logging through the host's logger. THREAD: any.
///
/// The host prefixes nothing: name your transform in the message (e.g. `"tee: …"`).
public enum Log {
    /// Writes one line at `level`.
    @inlinable
    public static func write(_ level: LogLevel, _ message: String) {
        var text = message
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Host.api.pointee.log(level.rawValue, $0.baseAddress, $0.count) }
        }
    }

    /// Writes raw bytes as one line at `level` (they need not be valid UTF-8 nor NUL-terminated).
    @inlinable
    public static func write(_ level: LogLevel, bytes: UnsafeRawBufferPointer) {
        Host.api.pointee.log(level.rawValue, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }

    public static func trace(_ message: String) { write(.trace, message) }
    public static func debug(_ message: String) { write(.debug, message) }
    public static func info(_ message: String) { write(.info, message) }
    public static func warning(_ message: String) { write(.warning, message) }
    public static func error(_ message: String) { write(.error, message) }
}

// MARK: - Handles resolved at config time

/// A counter made with `ConfigEnv.counter(_:)`, exported as `sluice_plugin_<name>_total`.
/// Keep it in the transform (config) object; `add` may be called from any thread.
public struct Counter {
    /// The host's `sluice_metric*`.
    public let raw: OpaquePointer

    public init(raw: OpaquePointer) { self.raw = raw }

    /// Adds `delta` (default 1). THREAD: any.
    @inlinable
    public func add(_ delta: UInt64 = 1) { Host.api.pointee.metric_add(raw, delta) }

    /// Adds a non-negative `Int` (negative values are ignored).
    @inlinable
    public func add(_ delta: Int) {
        if delta > 0 { Host.api.pointee.metric_add(raw, UInt64(delta)) }
    }
}

/// A chain or sink resolved by name with `ConfigEnv.resolveTarget(_:at:)`; valid for the whole
/// process, usable from every connection's thread with `InstanceEnv.send`.
public struct Target {
    /// The name as written in the config.
    public let name: String
    /// The host's `sluice_target*`.
    public let raw: OpaquePointer

    public init(name: String, raw: OpaquePointer) {
        self.name = name
        self.raw = raw
    }
}

// MARK: - Errors

/// A host function refused an operation (`SLUICE_ERROR_*` status).
///
/// Thrown by the SDK's throwing wrappers. When it escapes `onRequests`/`onResponses`, the SDK
/// fails the call with its description (the client gets `-ERR <transform>: <description>`).
public struct SluiceError: Error, CustomStringConvertible {
    /// The status the host returned.
    public let status: Int32
    /// What was attempted, e.g. "batch_insert_from".
    public let operation: String

    public init(status: Int32, operation: String) {
        self.status = status
        self.operation = operation
    }

    public var description: String { "\(operation) failed: \(statusName(status))" }
}

/// A readable name of a `SLUICE_*` status code.
public func statusName(_ status: Int32) -> String {
    switch status {
    case SLUICE_OK: return "ok"
    case SLUICE_ERROR: return "error"
    case SLUICE_ERROR_INVALID_ARGUMENT: return "invalid argument"
    case SLUICE_ERROR_STATE: return "not allowed in this state"
    case SLUICE_ERROR_MALFORMED: return "malformed message"
    case SLUICE_END: return "end"
    case SLUICE_ERROR_NOT_FOUND: return "not found"
    default: return "status \(status)"
    }
}

@inlinable @inline(__always)
func check(_ status: Int32, _ operation: StaticString) throws {
    if status != SLUICE_OK { throw SluiceError(status: status, operation: "\(operation)") }
}
