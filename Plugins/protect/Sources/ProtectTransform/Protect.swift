import SluiceSDK

/// protect: encrypts the values of protected keys (strings and hash fields) with AES-256-GCM on
/// their way to storage and decrypts them on the way back; refuses commands that would expose or
/// compute on ciphertext. See docs/transforms/protect.md.
final class Protect: Transform {
    static let name = "protect"
    static let summary = "encrypts string and hash values of keys matching globs (AES-256-GCM), decrypts them on reads"
    static let handlesResponses = true

    let patterns: [[UInt8]]
    let keyRing: KeyRing
    let encrypted: Counter
    let decrypted: Counter
    let refused: Counter
    let decryptFailures: Counter

    init(config: ConfigNode, env: ConfigEnv) throws {
        guard config.kind == .map else {
            throw ConfigError("protect: expected a map { patterns: [GLOB…], key_id: ID, keys: { ID: { file: PATH } | { env: VAR } } }", at: config)
        }
        try config.requireKeys(["patterns", "key_id", "keys"], in: "protect")
        patterns = try config.strings("patterns").map { Array($0.utf8) }
        guard !patterns.isEmpty else {
            throw ConfigError("patterns is required: a non-empty list of key globs whose values are encrypted", at: config["patterns"] ?? config)
        }
        keyRing = try KeyRing(config: config)
        encrypted = try env.counter("protect_encrypted")
        decrypted = try env.counter("protect_decrypted")
        refused = try env.counter("protect_refused")
        decryptFailures = try env.counter("protect_decrypt_failures")
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance { ProtectInstance(protect: self, env: env) }

    /// Whether the values of `key` are encrypted.
    @inline(__always)
    func isProtected(_ key: UnsafeRawBufferPointer) -> Bool {
        for pattern in patterns where pattern.withUnsafeBytes({ globMatches($0, key) }) { return true }
        return false
    }
}
