#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix

/// A failed connect to a backend in words an operator and a client understand ("connection
/// refused", "cannot resolve 'redis-1'"). NIO's errors describe themselves with their Swift type
/// names (`NIOConnectionError(… SingleConnectionFailure(target: [IPv4]…, error: …))`), which are
/// the host's internals and must not reach a client's error reply or the log.
enum ConnectFailureDescription {
    static func describe(_ error: Error) -> String {
        switch error {
        case let failure as NIOConnectionError:
            if let dns = failure.dnsAError ?? failure.dnsAAAAError {
                return "cannot resolve '\(failure.host)': \(describe(dns))"
            }
            let attempts = failure.connectionErrors
            guard !attempts.isEmpty else { return "cannot resolve '\(failure.host)': no address" }
            if attempts.count == 1 { return describe(attempts[0].error) }
            // A name with several addresses: what happened at each.
            return attempts.map { "\(address($0.target)): \(describe($0.error))" }.joined(separator: "; ")
        case let failure as IOError:
            return reason(errno: failure.errnoCode)
        case ChannelError.connectTimeout(let time):
            return "no connection within \(time.nanoseconds / 1_000_000) ms"
        case let unknown as SocketAddressError.UnknownHost:
            return "cannot resolve '\(unknown.host)': \(unknown.errorDescription)"
        default:
            return TLSErrors.reason(of: error) ?? "\(error)"
        }
    }

    /// strerror's text starting in lower case ("connection refused").
    static func reason(errno code: CInt) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }

    private static func address(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
