#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOCore

/// The addresses a config listens on (every source, the metrics and admin endpoints), checked before
/// anything listens, so that `sluice check` catches what `sluice run` would fail on and every
/// problem names the address and the line it is written on:
/// - a host that is neither an IP address nor a name this machine resolves;
/// - two listeners on one port of one address (a wildcard address shares its port with all);
/// - an address that cannot be bound: in use by another process, not an address of this machine,
///   a privileged port. This is tried for real: a socket is bound as the server binds it
///   (SO_REUSEADDR) and put in the listening state, then closed.
enum ListenCheck {
    /// One address of the config that Sluice listens on.
    struct Listener {
        /// "source.redis.listen", "observability.metrics".
        let what: String
        let host: String
        let port: Int
        let node: YAMLNode

        var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    static func listeners(of config: SluiceConfig) -> [Listener] {
        var all = config.sources.map { source in
            Listener(what: "source.\(source.kind.rawValue).listen", host: source.host, port: source.port,
                     node: source.node["listen"] ?? source.node)
        }
        if let metrics = config.metricsListen, let node = config.metricsListenNode {
            all.append(Listener(what: "observability.metrics", host: metrics.host, port: metrics.port, node: node))
        }
        // A supervised worker serves admin on a private socket: the address is its supervisor's.
        if let admin = config.admin, ProcessInfo.processInfo.environment[AdminForwarder.socketDirectoryVariable] == nil {
            all.append(Listener(what: "admin.listen", host: admin.host, port: admin.port, node: admin.listenNode))
        }
        return all
    }

    /// Every problem with the listen addresses of `config`; with `tryBinding` false, only what can
    /// be seen without touching the network (for checking a config whose ports a running Sluice holds).
    static func problems(of config: SluiceConfig, tryBinding: Bool) -> [ConfigError] {
        var errors: [ConfigError] = []
        func fail(_ listener: Listener, _ message: String) {
            errors.append(config.error(listener.node, "\(listener.what): \(message)"))
        }
        var resolved: [(listener: Listener, address: SocketAddress)] = []
        for listener in listeners(of: config) {
            guard let address = try? SocketAddress.makeAddressResolvingHost(listener.host, port: listener.port) else {
                fail(listener, "cannot listen on \(listener.address): '\(listener.host)' is neither an IP address nor a host name this machine resolves")
                continue
            }
            if let earlier = resolved.first(where: { sharePort($0.address, address) }) {
                let position = "\(earlier.listener.node.line):\(earlier.listener.node.column)"
                fail(listener, "cannot listen on \(listener.address): port \(listener.port) is already taken by \(earlier.listener.what) \(earlier.listener.address) (line \(position))")
                continue
            }
            resolved.append((listener, address))
        }
        guard tryBinding else { return errors }
        var held: [CInt] = []
        defer { for descriptor in held { close(descriptor) } }
        for (listener, address) in resolved where listener.port != 0 {
            switch bindAndListen(address) {
            case .success(let descriptor):
                held.append(descriptor)
            case .failure(let failure):
                fail(listener, "cannot listen on \(listener.address): \(failure.reason)")
            }
        }
        return errors
    }

    /// Whether two listeners would need the same port of the same address: equal addresses, or one
    /// of them a wildcard (0.0.0.0, or :: which on Linux takes the IPv4 port too).
    static func sharePort(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        guard let portA = a.port, portA != 0, portA == b.port, let ipA = a.ipAddress, let ipB = b.ipAddress else { return false }
        if ipA == ipB { return true }
        let wildcards = ["0.0.0.0", "::"]
        if ipA == "::" || ipB == "::" { return true }
        return (wildcards.contains(ipA) || wildcards.contains(ipB)) && a.protocol == b.protocol
    }

    struct BindFailure: Error {
        let reason: String
    }

    /// Binds a socket to `address` as the server does and makes it listen; the descriptor is the
    /// caller's to close.
    static func bindAndListen(_ address: SocketAddress) -> Result<CInt, BindFailure> {
        #if canImport(Glibc)
        let descriptor = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        #else
        let descriptor = socket(address.protocol.rawValue, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { return .failure(BindFailure(reason: reason(errno))) }
        var one: CInt = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
        guard bound == 0, listen(descriptor, 1) == 0 else {
            let code = errno
            close(descriptor)
            return .failure(BindFailure(reason: reason(code)))
        }
        return .success(descriptor)
    }

    /// What a bind errno means for the operator.
    static func reason(_ code: CInt) -> String {
        switch code {
        case EADDRINUSE: return "the address is already in use (another process listens there)"
        case EADDRNOTAVAIL: return "that address is not one of this machine's"
        case EACCES: return "permission denied (ports below 1024 need privileges)"
        default: return String(cString: strerror(code))
        }
    }
}

/// `sluice run` could not listen: which address, written where, and why. The addresses were
/// checked just before (`ListenCheck`), so this is a race (another process took a port in the
/// meantime) or something the check cannot see; the check is run again to name the address.
public struct ListenFailure: Error, CustomStringConvertible {
    public let description: String

    static func explaining(_ error: Error, config: SluiceConfig) -> Error {
        let problems = ListenCheck.problems(of: config, tryBinding: true)
        if !problems.isEmpty { return ConfigErrors(errors: problems) }
        let addresses = ListenCheck.listeners(of: config)
            .map { "\($0.address) (\(config.file):\($0.node.line):\($0.node.column))" }
        return ListenFailure(description: "cannot listen on one of \(addresses.joined(separator: ", ")): \(error)")
    }
}
