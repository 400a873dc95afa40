import Foundation
import NIOCore
import NIOSSL

extension SluiceConfig {
    /// TLS on a sink (Sluice is the client) or a source (Sluice is the server). Files are PEM, paths
    /// absolute or relative to the config file; every one is read and checked when the config is.
    public struct TLS {
        /// Sluice's own certificate chain and key: required on a source; on a sink, a client
        /// certificate for backends that ask for one (Redis's `tls-auth-clients yes`).
        public let certificateFile: String?
        public let keyFile: String?
        /// On a sink: the CAs the backend's certificate must chain to (default: the system's).
        /// On a source: clients must present a certificate signed by one of these (mutual TLS).
        public let caFile: String?
        /// Sink only: the name the backend's certificate must carry, also sent as SNI (default: the
        /// sink's host when it is a name; an IP address is checked against the certificate's IPs).
        public let serverName: String?
        /// Sink only: false skips checking the backend's certificate (encryption without
        /// authentication; for testing only).
        public let verify: Bool
    }
}

extension ConfigReader {
    /// `tls:` of a sink (`true`, or a map) or of a source (a map with cert_file and key_file).
    mutating func readTLS(_ node: YAMLNode?, _ what: String, isSource: Bool) -> SluiceConfig.TLS? {
        guard let node else { return nil }
        if !isSource, node.kind == .scalar, ["true", "false"].contains(node.scalar) {
            return node.scalar == "true"
                ? SluiceConfig.TLS(certificateFile: nil, keyFile: nil, caFile: nil, serverName: nil, verify: true) : nil
        }
        let allowed = isSource ? ["cert_file", "key_file", "ca_file"]
                               : ["cert_file", "key_file", "ca_file", "server_name", "verify"]
        guard expectMap(node, "\(what).tls", allowed: allowed) else { return nil }
        func path(_ key: String) -> String? {
            guard let value = node[key] else { return nil }
            guard let text = scalar(value, "\(what).tls.\(key)", at: node) else { return nil }
            guard !text.isEmpty else {
                fail(value, "\(what).tls.\(key): expected a file path, found an empty string")
                return nil
            }
            let full = text.hasPrefix("/") ? text : URL(fileURLWithPath: file).deletingLastPathComponent().path + "/" + text
            guard FileManager.default.isReadableFile(atPath: full) else {
                fail(value, "\(what).tls.\(key): cannot read '\(full)'")
                return nil
            }
            return full
        }
        let certificate = path("cert_file"), key = path("key_file"), ca = path("ca_file")
        if (node["cert_file"] == nil) != (node["key_file"] == nil) {
            fail(node, "\(what).tls: cert_file and key_file go together")
        } else if isSource, node["cert_file"] == nil {
            fail(node, "\(what).tls: cert_file and key_file are required (the certificate Sluice presents to clients)")
        }
        if let certificate, (try? NIOSSLCertificate.fromPEMFile(certificate))?.isEmpty ?? true {
            fail(node["cert_file"]!, "\(what).tls.cert_file: '\(certificate)' holds no PEM certificate")
        }
        if let key, (try? NIOSSLPrivateKey(file: key, format: .pem)) == nil {
            fail(node["key_file"]!, "\(what).tls.key_file: '\(key)' holds no PEM private key")
        }
        if let ca, (try? NIOSSLCertificate.fromPEMFile(ca))?.isEmpty ?? true {
            fail(node["ca_file"]!, "\(what).tls.ca_file: '\(ca)' holds no PEM certificate")
        }
        var verify = true
        if let value = node["verify"] {
            guard value.kind == .scalar, ["true", "false"].contains(value.scalar) else {
                fail(value, "\(what).tls.verify: expected true or false")
                return nil
            }
            verify = value.scalar == "true"
        }
        let serverName = node["server_name"].flatMap { scalar($0, "\(what).tls.server_name", at: node) }
        if let serverName, let value = node["server_name"],
           serverName.isEmpty || TLSContexts.isIPAddress(serverName) {
            // SNI carries host names only; an IP address is checked without one (leave it out).
            fail(value, "\(what).tls.server_name: expected a host name, found '\(serverName)' (for an IP address, leave server_name out)")
        }
        return SluiceConfig.TLS(certificateFile: certificate, keyFile: key, caFile: ca, serverName: serverName, verify: verify)
    }
}

/// The NIOSSL contexts for a config's TLS settings (built once, shared by every connection).
enum TLSContexts {
    /// Sluice connecting to a backend.
    static func client(_ tls: SluiceConfig.TLS) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = tls.verify ? .fullVerification : .none
        if let ca = tls.caFile { configuration.trustRoots = .file(ca) }
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// Clients connecting to Sluice.
    static func server(_ tls: SluiceConfig.TLS) throws -> NIOSSLContext {
        guard let certificate = tls.certificateFile, let key = tls.keyFile else {
            throw TLSConfigurationError.missingCertificate
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        if let ca = tls.caFile {
            configuration.trustRoots = .file(ca)
            configuration.certificateVerification = .noHostnameVerification  // client certificates carry no host name
        }
        return try NIOSSLContext(configuration: configuration)
    }

    enum TLSConfigurationError: Error {
        case missingCertificate
    }

    /// Whether `host` is an IP address (which is not a server name: no SNI, the certificate's IP
    /// entries are checked instead).
    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// TLS failures as Sluice reports them.
enum TLSErrors {
    /// BoringSSL's reason (CERTIFICATE_VERIFY_FAILED…) without the error-queue dump around it, or
    /// SwiftNIO SSL's own description; nil for an error that does not come from TLS.
    static func reason(of error: Error) -> String? {
        guard error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError else { return nil }
        let text = "\(error)"
        if let marker = text.range(of: "OPENSSL_internal:") {
            let reason = text[marker.upperBound...].prefix { $0 != " " && $0 != "]" && $0 != ")" }
            if !reason.isEmpty { return String(reason) }
        }
        return text
    }
}
