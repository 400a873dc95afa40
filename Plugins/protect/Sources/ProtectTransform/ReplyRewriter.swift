import SluiceSDK

/// Replaces stored values in replies with their plaintext, re-encoding the reply in the client's
/// protocol (the backend answered in it; only the decrypted bulk strings change).
struct ReplyRewriter {
    let keyRing: KeyRing
    /// Whether the client speaks RESP3 (for the encoding of nulls inside arrays).
    let resp3: Bool
    /// Values decrypted so far.
    private(set) var decrypted = 0
    private var out: [UInt8] = []

    init(keyRing: KeyRing, resp3: Bool) {
        self.keyRing = keyRing
        self.resp3 = resp3
    }

    /// A reply of an unexpected shape (nested where a flat list of values was expected).
    struct UnexpectedReply: Error, CustomStringConvertible {
        var description: String { "the reply has an unexpected shape" }
    }

    /// Decrypts what `plan` names in response `index`. Errors, nulls and replies of another type
    /// (WRONGTYPE …) are left as they are. Throws on a value that cannot be opened.
    mutating func rewrite(_ responses: Batch, index: Int, plan: ReplyPlan) throws {
        switch plan {
        case .transaction(let plans):
            try rewriteTransaction(responses, index: index, plans: plans)
            return
        case .execAbort:
            responses.putError("EXECABORT Transaction discarded because of previous errors.", at: index)
            return
        default:
            break
        }
        var values = responses.values(at: index)
        guard let top = values.next() else { return }
        if case .value = plan {
            guard top.type == Int32(SLUICE_REDIS_BULK_STRING) else { return }
            let plaintext = try keyRing.open(view(top.bytes))
            decrypted += 1
            responses.putBulk(plaintext, at: index)
            return
        }
        let elements: Int
        switch top.type {
        case Int32(SLUICE_REDIS_ARRAY): elements = Int(top.count); header(UInt8(ascii: "*"), elements)
        case Int32(SLUICE_REDIS_SET): elements = Int(top.count); header(UInt8(ascii: "~"), elements)
        case Int32(SLUICE_REDIS_MAP): elements = 2 * Int(top.count); header(UInt8(ascii: "%"), Int(top.count))
        default: return
        }
        for element in 0..<elements {
            guard let value = values.next() else { throw UnexpectedReply() }
            if plan.decrypts(element: element), value.type == Int32(SLUICE_REDIS_BULK_STRING) {
                let plaintext = try keyRing.open(view(value.bytes))
                decrypted += 1
                plaintext.withUnsafeBytes { bulk(UInt8(ascii: "$"), $0) }
            } else {
                try scalar(value)
            }
        }
        _ = out.withUnsafeBufferPointer {
            sluiceHost.pointee.batch_put_bytes(responses.raw, index, $0.baseAddress, $0.count)
        }
        out.removeAll(keepingCapacity: true)
    }

    /// A reply to EXEC that does not have one element per command protect saw queued (another
    /// transform answered some of them itself): which element is which is unknown.
    struct TransactionMismatch: Error, CustomStringConvertible {
        let elements: Int, queued: Int
        var description: String { "EXEC's reply has \(elements) elements for \(queued) queued commands" }
    }

    /// EXEC's array: the elements of queued reads of protected keys are decrypted, every other
    /// element is copied byte for byte. An error (EXECABORT) or a null (WATCH) is left as it is.
    private mutating func rewriteTransaction(_ responses: Batch, index: Int, plans: [ReplyPlan?]) throws {
        let raw = responses.bytes(at: index)
        guard raw.count > 0, raw[0] == UInt8(ascii: "*") else { return }
        let (count, first) = try RawReply.number(raw, 0)
        guard count >= 0 else { return }
        guard count == plans.count else { throw TransactionMismatch(elements: count, queued: plans.count) }
        out.removeAll(keepingCapacity: true)
        out += UnsafeRawBufferPointer(rebasing: raw[0..<first])
        var start = first
        for plan in plans {
            let end = try RawReply.skip(raw, start)
            let element = UnsafeRawBufferPointer(rebasing: raw[start..<end])
            if let plan { try appendDecrypted(element, plan) } else { out += element }
            start = end
        }
        _ = out.withUnsafeBufferPointer {
            sluiceHost.pointee.batch_put_bytes(responses.raw, index, $0.baseAddress, $0.count)
        }
        out.removeAll(keepingCapacity: true)
    }

    /// Appends one element of EXEC's reply with the values `plan` names decrypted.
    private mutating func appendDecrypted(_ element: UnsafeRawBufferPointer, _ plan: ReplyPlan) throws {
        switch element[0] {
        case UInt8(ascii: "$"):
            guard case .value = plan else { out += element; return }
            try appendDecryptedBulk(element)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: "%"):
            if case .value = plan { out += element; return }
            let (count, first) = try RawReply.number(element, 0)
            guard count > 0 else { out += element; return }
            out += UnsafeRawBufferPointer(rebasing: element[0..<first])
            var start = first
            for k in 0..<(element[0] == UInt8(ascii: "%") ? 2 * count : count) {
                let end = try RawReply.skip(element, start)
                let sub = UnsafeRawBufferPointer(rebasing: element[start..<end])
                if plan.decrypts(element: k), sub[0] == UInt8(ascii: "$") { try appendDecryptedBulk(sub) } else { out += sub }
                start = end
            }
        default:
            out += element  // an error (WRONGTYPE …) or a null
        }
    }

    /// Appends a bulk string given as wire bytes, decrypted (a null bulk string as it is).
    private mutating func appendDecryptedBulk(_ wire: UnsafeRawBufferPointer) throws {
        let (length, first) = try RawReply.number(wire, 0)
        guard length >= 0 else { out += wire; return }
        let plaintext = try keyRing.open(UnsafeRawBufferPointer(rebasing: wire[first..<(first + length)]))
        decrypted += 1
        plaintext.withUnsafeBytes { bulk(UInt8(ascii: "$"), $0) }
    }

    private func view(_ v: sluice_host_view) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: v.ptr, count: v.len)
    }

    private mutating func header(_ type: UInt8, _ count: Int) {
        out.removeAll(keepingCapacity: true)
        out.append(type)
        out += String(count).utf8
        out += [13, 10]
    }

    private mutating func line(_ type: UInt8, _ text: UnsafeRawBufferPointer) {
        out.append(type)
        out += text
        out += [13, 10]
    }

    private mutating func bulk(_ type: UInt8, _ bytes: UnsafeRawBufferPointer) {
        out.append(type)
        out += String(bytes.count).utf8
        out += [13, 10]
        out += bytes
        out += [13, 10]
    }

    /// Re-encodes a scalar element as it came (aggregates are not expected here).
    private mutating func scalar(_ value: sluice_redis_value) throws {
        let bytes = view(value.bytes)
        switch value.type {
        case Int32(SLUICE_REDIS_BULK_STRING): bulk(UInt8(ascii: "$"), bytes)
        case Int32(SLUICE_REDIS_NULL): out += resp3 ? Array("_\r\n".utf8) : Array("$-1\r\n".utf8)
        case Int32(SLUICE_REDIS_SIMPLE_STRING): line(UInt8(ascii: "+"), bytes)
        case Int32(SLUICE_REDIS_ERROR): line(UInt8(ascii: "-"), bytes)
        case Int32(SLUICE_REDIS_INTEGER): out.append(UInt8(ascii: ":")); out += String(value.integer).utf8; out += [13, 10]
        case Int32(SLUICE_REDIS_BOOLEAN): out += value.integer != 0 ? Array("#t\r\n".utf8) : Array("#f\r\n".utf8)
        case Int32(SLUICE_REDIS_DOUBLE): line(UInt8(ascii: ","), bytes)
        case Int32(SLUICE_REDIS_BIG_NUMBER): line(UInt8(ascii: "("), bytes)
        case Int32(SLUICE_REDIS_BLOB_ERROR): bulk(UInt8(ascii: "!"), bytes)
        case Int32(SLUICE_REDIS_VERBATIM): bulk(UInt8(ascii: "="), bytes)
        default: throw UnexpectedReply()
        }
    }
}
