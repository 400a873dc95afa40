import Crypto
import Foundation

/// The stored form of a protected value (all of it binary, in the Redis value):
///
///     offset 0   4 bytes   magic 00 53 4C 50 ("\0SLP")
///            4   1 byte    format version, 1
///            5   1 byte    key-id length n (1…255)
///            6   n bytes   key id (as configured under keys:)
///        6 + n   12 bytes  AES-GCM nonce (random per write)
///       18 + n   …         ciphertext (as long as the plaintext), then the 16-byte GCM tag
///
/// The header (magic, version, key id: the first 6 + n bytes) is authenticated as associated data,
/// so a value whose key id was edited fails to open as surely as one whose ciphertext was.
enum Envelope {
    static let magic: [UInt8] = [0x00, 0x53, 0x4C, 0x50]
    static let version: UInt8 = 1
    static let nonceLength = 12
    static let tagLength = 16

    /// Why a stored value could not be opened.
    enum Failure: Error, CustomStringConvertible {
        case notProtected
        case unsupportedVersion(UInt8)
        case truncated
        case unknownKey(String)
        case authentication(String)

        var description: String {
            switch self {
            case .notProtected: return "it was not written by protect (no protect header)"
            case .unsupportedVersion(let v): return "its format version \(v) is not supported"
            case .truncated: return "it is truncated"
            case .unknownKey(let id): return "its key id '\(id)' is not configured"
            case .authentication(let id): return "authentication failed with key '\(id)' (tampered, or not written with this key)"
            }
        }
    }

    /// Encrypts `plaintext` with `key` under `keyID` (1…255 bytes) into a fresh envelope.
    static func seal(_ plaintext: UnsafeRawBufferPointer, keyID: [UInt8], key: SymmetricKey) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(6 + keyID.count + nonceLength + plaintext.count + tagLength)
        out += magic
        out.append(version)
        out.append(UInt8(keyID.count))
        out += keyID
        let nonce = AES.GCM.Nonce()
        let box = try AES.GCM.seal(plaintext, using: key, nonce: nonce, authenticating: out)
        out += nonce
        out += box.ciphertext
        out += box.tag
        return out
    }

    /// The key id of an envelope, or why `value` is not one.
    static func keyID(of value: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        guard value.count >= 6, value[0] == magic[0], value[1] == magic[1], value[2] == magic[2],
              value[3] == magic[3] else { throw Failure.notProtected }
        guard value[4] == version else { throw Failure.unsupportedVersion(value[4]) }
        let idLength = Int(value[5])
        guard idLength > 0, value.count >= 6 + idLength + nonceLength + tagLength else { throw Failure.truncated }
        return UnsafeRawBufferPointer(rebasing: value[6..<(6 + idLength)])
    }

    /// Decrypts an envelope with `key` (the key of `keyID(of: value)`).
    static func open(_ value: UnsafeRawBufferPointer, key: SymmetricKey, keyID: String) throws -> [UInt8] {
        let headerLength = 6 + Int(value[5])
        let nonceEnd = headerLength + nonceLength
        let tagStart = value.count - tagLength
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: UnsafeRawBufferPointer(rebasing: value[headerLength..<nonceEnd])),
                ciphertext: UnsafeRawBufferPointer(rebasing: value[nonceEnd..<tagStart]),
                tag: UnsafeRawBufferPointer(rebasing: value[tagStart...]))
            let plaintext = try AES.GCM.open(box, using: key,
                                             authenticating: UnsafeRawBufferPointer(rebasing: value[0..<headerLength]))
            return [UInt8](plaintext)
        } catch {
            throw Failure.authentication(keyID)
        }
    }
}
