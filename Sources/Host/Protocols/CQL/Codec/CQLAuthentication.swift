import NIOCore

/// AUTHENTICATE: the [string] class name of the server's authenticator
/// (org.apache.cassandra.auth.PasswordAuthenticator for user name and password).
public struct CQLAuthenticate: Sendable {
    public let authenticator: String

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        authenticator = try reader.readText()
    }
}

/// The [bytes] token of AUTH_RESPONSE, AUTH_CHALLENGE and AUTH_SUCCESS (nil when sent as null).
/// PasswordAuthenticator's AUTH_RESPONSE token is `\0user\0password` (SASL PLAIN).
public struct CQLAuthToken: Sendable {
    public let token: ByteBuffer?

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        token = try reader.readBytes()
    }

    /// The user name and password of a SASL PLAIN token (authzid, user, password separated by NUL),
    /// or nil when the token is not one.
    public var plainCredentials: (user: String, password: String)? {
        guard let token else { return nil }
        let parts = Array(buffer: token).split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        return (String(decoding: parts[1], as: UTF8.self), String(decoding: parts[2], as: UTF8.self))
    }
}

/// SUPPORTED: a [string multimap] of the options STARTUP may choose (CQL_VERSION, COMPRESSION,
/// PROTOCOL_VERSIONS, …).
public struct CQLSupported: Sendable {
    public let options: [String: [String]]

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        options = try reader.readStringMultimap()
    }
}
