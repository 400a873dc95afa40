@_exported import PluginABI

/// The host function table, stored by `SluicePlugin.initialize` when the host loads the plugin.
/// Valid for the life of the process.
public var sluiceHost: UnsafePointer<sluice_host_api>!

/// Logging through the host's logger. Safe from any thread.
public enum Log {
    public static func trace(_ message: String) { write(Int32(SLUICE_LOG_TRACE), message) }
    public static func debug(_ message: String) { write(Int32(SLUICE_LOG_DEBUG), message) }
    public static func info(_ message: String) { write(Int32(SLUICE_LOG_INFO), message) }
    public static func warning(_ message: String) { write(Int32(SLUICE_LOG_WARNING), message) }
    public static func error(_ message: String) { write(Int32(SLUICE_LOG_ERROR), message) }

    static func write(_ level: Int32, _ message: String) {
        var text = message
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { sluiceHost.pointee.log(level, $0.baseAddress, $0.count) }
        }
    }
}

/// A counter created at config time (`ConfigEnv.counter`). Safe from any thread.
public struct Counter {
    let raw: OpaquePointer
    public func add(_ n: Int = 1) { sluiceHost.pointee.metric_add(raw, UInt64(max(n, 0))) }
}

/// A named chain or sink resolved at config time (`ConfigEnv.target`).
public struct Target {
    public let name: String
    let raw: OpaquePointer
}

/// Bytes as they would be printed in a log line: printable ASCII kept, the rest escaped, truncated.
public func printable(_ bytes: UnsafeRawBufferPointer, limit: Int) -> String {
    var out = ""
    for (i, b) in bytes.enumerated() {
        if i >= limit {
            out += "…(\(bytes.count) bytes)"
            break
        }
        switch b {
        case 32..<127 where b != 92: out.unicodeScalars.append(UnicodeScalar(b))
        case 92: out += "\\\\"
        case 10: out += "\\n"
        case 13: out += "\\r"
        default: out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
        }
    }
    return out
}
