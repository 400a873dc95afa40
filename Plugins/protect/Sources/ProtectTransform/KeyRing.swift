import Crypto
import Foundation
import SluiceSDK

/// The AES-256 keys of a protect transform, by id: `current` encrypts every new write, all of them
/// decrypt (so values written before a rotation still read).
struct KeyRing {
    let currentID: [UInt8]
    let current: SymmetricKey
    /// Every configured key by id bytes.
    let keys: [[UInt8]: SymmetricKey]

    /// Reads `keys:` (each `{ file: PATH }` or `{ env: VAR }` holding 32 bytes in base64) and
    /// `key_id:`; every problem is reported at its node.
    init(config: ConfigNode) throws {
        guard let keysNode = config["keys"], !keysNode.isNull else {
            throw ConfigError("keys is required: a map of key id to { file: PATH } or { env: VAR }", at: config)
        }
        guard keysNode.kind == .map, !keysNode.pairs.isEmpty else {
            throw ConfigError("keys: expected a non-empty map of key id to { file: PATH } or { env: VAR }", at: keysNode)
        }
        var keys: [[UInt8]: SymmetricKey] = [:]
        for (idNode, source) in keysNode.pairs {
            let id = Array((idNode.string ?? "").utf8)
            guard (1...255).contains(id.count) else {
                throw ConfigError("a key id must be 1 to 255 bytes long", at: idNode)
            }
            keys[id] = try KeyRing.loadKey(id: idNode.string ?? "", source: source)
        }
        guard let idNode = config["key_id"], !idNode.isNull else {
            throw ConfigError("key_id is required: the id (under keys:) of the key new values are encrypted with", at: config)
        }
        guard let id = idNode.string else { throw ConfigError("key_id: expected a scalar", at: idNode) }
        guard let key = keys[Array(id.utf8)] else {
            let known = keysNode.pairs.compactMap { $0.key.string }.joined(separator: ", ")
            throw ConfigError("key_id '\(id)' is not one of the keys (\(known))", at: idNode)
        }
        currentID = Array(id.utf8)
        current = key
        self.keys = keys
    }

    /// One key from `{ file: PATH }` or `{ env: VAR }`.
    private static func loadKey(id: String, source: ConfigNode) throws -> SymmetricKey {
        try source.requireKeys(["file", "env"], in: "keys.\(id)")
        guard source.kind == .map else {
            throw ConfigError("keys.\(id): expected { file: PATH } or { env: VAR }", at: source)
        }
        let file = try source.string("file")
        let variable = try source.string("env")
        let text: String
        let where_: String
        let node: ConfigNode?
        switch (file, variable) {
        case (let path?, nil):
            node = source["file"]
            where_ = "file '\(path)'"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError("keys.\(id): cannot read the key file '\(path)'", at: node)
            }
            text = String(decoding: data, as: UTF8.self)
        case (nil, let name?):
            node = source["env"]
            where_ = "environment variable \(name)"
            guard let value = ProcessInfo.processInfo.environment[name] else {
                throw ConfigError("keys.\(id): the environment variable \(name) is not set", at: node)
            }
            text = value
        default:
            throw ConfigError("keys.\(id): give exactly one of file: PATH or env: VAR", at: source)
        }
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ConfigError("keys.\(id): the \(where_) does not hold valid base64", at: node)
        }
        guard bytes.count == 32 else {
            throw ConfigError("keys.\(id): the \(where_) holds \(bytes.count) bytes, a key is 32 bytes (AES-256), base64-encoded", at: node)
        }
        return SymmetricKey(data: bytes)
    }

    /// Encrypts a plaintext with the current key.
    func seal(_ plaintext: UnsafeRawBufferPointer) throws -> [UInt8] {
        try Envelope.seal(plaintext, keyID: currentID, key: current)
    }

    /// Decrypts a stored value with the key its header names.
    func open(_ value: UnsafeRawBufferPointer) throws -> [UInt8] {
        let id = try Envelope.keyID(of: value)
        let idText = String(decoding: id, as: UTF8.self)
        guard let key = keys[Array(id)] else { throw Envelope.Failure.unknownKey(idText) }
        return try Envelope.open(value, key: key, keyID: idText)
    }
}
