import NIOCore

/// What drivers learn about the cluster through Sluice: one node, the proxy.
///
/// Drivers read `system.peers` (or `system.peers_v2`) to find the other nodes of the cluster and
/// then connect to each of them directly. A cassandra sink is one node, and a driver connected to
/// Sluice must stay on Sluice (or its transforms are bypassed), so Sluice answers a SELECT on
/// either table, sent as a QUERY or as an EXECUTE of a statement prepared through the sink, with
/// the backend's own reply emptied: the same column specs (or the same No_metadata reply), no
/// paging state, zero rows. An ERROR reply passes unchanged.
///
/// `system.local` passes unchanged: drivers keep the address they connected to (Sluice's) for the
/// node that answers it. The DataStax python driver stores its `rpc_address` as the host's
/// `broadcast_rpc_address` (used to match STATUS_CHANGE events), never as an address to connect to.
enum CQLClusterView {
    /// Whether the tables `keyspace.table` (as the classifier names them) list the other nodes.
    static func isPeersTable(keyspace: String?, table: String?) -> Bool {
        keyspace == "system" && (table == "peers" || table == "peers_v2")
    }

    /// Whether a statement's text is a SELECT on `system.peers` or `system.peers_v2`
    /// (`keyspace`: the connection's, for a text that names none).
    static func selectsPeers(_ text: ByteBuffer, keyspace: String?) -> Bool {
        guard mentionsPeers(text) else { return false }
        let statement = CQLStatement.classify(text)
        return statement.kind == .select && isPeersTable(keyspace: statement.keyspace(orConnection: keyspace),
                                                          table: statement.table)
    }

    /// A cheap look for "peers" in any case, so that only texts naming it are classified.
    static func mentionsPeers(_ text: ByteBuffer) -> Bool {
        text.withUnsafeReadableBytes(mentionsPeers)
    }

    /// Runs for every QUERY, so it skips eight bytes at a time while none of them is a p or P
    /// (`byte | 0x20 == 0x70` holds for exactly those two), and compares bytes only from a
    /// block that has one.
    static func mentionsPeers(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count >= 5 else { return false }
        let lastStart = count - 5
        var i = 0
        @inline(__always) func hasP(at offset: Int) -> Bool {
            let zeroWhereP = (bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) | 0x2020_2020_2020_2020)
                ^ 0x7070_7070_7070_7070
            // Nonzero exactly when some byte of zeroWhereP is 0 (the classic has-zero-byte test).
            return (zeroWhereP &- 0x0101_0101_0101_0101) & ~zeroWhereP & 0x8080_8080_8080_8080 != 0
        }
        while i <= lastStart {
            if i + 8 <= count {
                if !hasP(at: i) {
                    i += 8
                    continue
                }
            } else if count >= 8, !hasP(at: count - 8) {
                return false  // the last eight bytes hold every place left to look at
            }
            if bytes[i] | 0x20 == UInt8(ascii: "p"), bytes[i + 1] | 0x20 == UInt8(ascii: "e"),
               bytes[i + 2] | 0x20 == UInt8(ascii: "e"), bytes[i + 3] | 0x20 == UInt8(ascii: "r"),
               bytes[i + 4] | 0x20 == UInt8(ascii: "s") {
                return true
            }
            i += 1
        }
        return false
    }

    /// Whether the client's request `frame` (a QUERY, or an EXECUTE of an id recorded in
    /// `registry`) selects from the peers tables. (`keyspace` and `registry` are read only when
    /// needed: a stored property passed to the call would be retained for it, on every request.)
    static func asksForPeers(_ frame: CQLWireFrame, keyspace: @autoclosure () -> String?,
                             registry: @autoclosure () -> CQLPreparedRegistry) -> Bool {
        switch CQLOpcode(rawValue: frame.opcodeByte) {
        case .query?:
            // Most texts do not name the peers tables: a look at them in place settles it.
            if frame.textInPlace(mentionsPeers) == false { return false }
            guard let message = frame.message(), let length = message.getInteger(at: message.readerIndex, as: Int32.self),
                  length > 0, Int(length) <= message.readableBytes - 4,
                  let text = message.getSlice(at: message.readerIndex + 4, length: Int(length)) else { return false }
            guard mentionsPeers(text) else { return false }
            let statement = CQLStatement.classify(text)
            guard statement.kind == .select else { return false }
            var inKeyspace = statement.keyspace ?? keyspace()
            if statement.keyspace == nil, let version = frame.version, version.hasV5Messages,
               let request = try? CQLQueryRequest(message: message, version: version), let named = request.parameters.keyspace {
                inKeyspace = named  // a v5 QUERY may name the keyspace of its unqualified names
            }
            return isPeersTable(keyspace: inKeyspace, table: statement.table)
        case .execute?:
            guard let message = frame.message(),
                  let length = message.getInteger(at: message.readerIndex, as: UInt16.self),
                  Int(length) <= message.readableBytes - 2,
                  let id = message.getSlice(at: message.readerIndex + 2, length: Int(length)) else { return false }
            return registry().isPeersStatement(id: id)
        default:
            return false
        }
    }

    /// The receiver the route hands the reply to a SELECT on the peers tables (`asksForPeers`):
    /// it empties the reply first, then passes it to `receiver`.
    static func emptying(_ receiver: ResponseReceiver) -> ResponseReceiver {
        EmptyingReceiver(receiver)
    }

    /// `reply` (a whole, uncompressed response frame) with its RESULT Rows emptied: the same
    /// header (version, flags, stream), tracing id, warnings and custom payload, the same rows
    /// metadata without a paging state (Has_more_pages cleared), and a rows count of 0. Nil when
    /// `reply` is not a well-formed RESULT Rows (an ERROR, say), which then passes unchanged.
    static func emptyingRows(_ reply: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer? {
        guard let frame = CQLWireFrame(reply), frame.isResponse, let version = frame.version,
              frame.resultKind == .rows, let message = frame.message() else { return nil }
        var reader = CQLBodyReader(message)
        let flags: CQLRowsMetadata.Flags
        let afterPaging: Int
        let metadataEnd: Int
        do {
            _ = try reader.readInt()  // the kind
            flags = CQLRowsMetadata.Flags(rawValue: try reader.readInt())
            _ = try reader.readInt()  // the column count
            if flags.contains(.hasMorePages) { _ = try reader.readBytes() }
            afterPaging = message.readableBytes - reader.remaining
            // Reads the whole metadata once more, from its start, to find where it ends.
            var metadataReader = CQLBodyReader(message.getSlice(at: message.readerIndex + 4, length: message.readableBytes - 4)!)
            _ = try CQLRowsMetadata(from: &metadataReader, version: version)
            metadataEnd = message.readableBytes - metadataReader.remaining
        } catch {
            return nil
        }
        let body = frame.body
        let prefixLength = body.readableBytes - message.readableBytes
        let bodyLength = prefixLength + 12 + (metadataEnd - afterPaging) + 4
        var out = allocator.buffer(capacity: CQLFrameHeader.size + bodyLength)
        out.writeBytes(reply.readableBytesView.prefix(5))  // version, flags, stream, opcode
        out.writeInteger(Int32(bodyLength))
        out.writeBytes(body.readableBytesView.prefix(prefixLength))
        out.writeInteger(CQLResultKind.rows.rawValue)
        out.writeInteger(flags.subtracting(.hasMorePages).rawValue)
        out.writeBytes(message.readableBytesView.dropFirst(8).prefix(4))  // the column count
        out.writeBytes(message.readableBytesView.dropFirst(afterPaging).prefix(metadataEnd - afterPaging))
        out.writeInteger(Int32(0))  // rows
        return out
    }

    /// Hands on a reply with its rows emptied (anything else unchanged).
    private final class EmptyingReceiver: ResponseReceiver {
        private let receiver: ResponseReceiver

        init(_ receiver: ResponseReceiver) { self.receiver = receiver }

        func receive(_ outcome: ChainOutcome) {
            guard case .responses(let batch) = outcome, batch.count == 1,
                  let emptied = CQLClusterView.emptyingRows(batch.messages[0]) else {
                receiver.receive(outcome)
                return
            }
            receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [emptied])))
        }
    }
}
