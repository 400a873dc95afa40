import PluginABI

/// The start-up rule that a chain holds only transforms that handle the protocols reaching it: a
/// chain a `redis` source runs needs SLUICE_PROTOCOL_REDIS of every transform step, one a
/// `cassandra` source runs SLUICE_PROTOCOL_CQL, and a chain a transform sends to (tee, redirect)
/// needs whatever reaches the sending chain. A refusal names the chain, the step's position and
/// the protocol (at the step's line and column).
enum ProtocolCheck {
    struct Step {
        let chain: String
        let position: Int
        let name: String
        let node: YAMLNode
        let protocols: UInt32
    }

    static func name(_ flag: UInt32) -> String { flag == UInt32(SLUICE_PROTOCOL_CQL) ? "CQL" : "Redis" }

    /// Why `step` may not run on a chain `reachedBy` reaches (protocol flags), or nil.
    static func refusal(_ step: Step, reachedBy: UInt32, via: String? = nil) -> String? {
        let missing = reachedBy & ~step.protocols
        guard missing != 0 else { return nil }
        let flag = missing & UInt32(SLUICE_PROTOCOL_REDIS) != 0 ? UInt32(SLUICE_PROTOCOL_REDIS) : UInt32(SLUICE_PROTOCOL_CQL)
        let handles = [(UInt32(SLUICE_PROTOCOL_REDIS), "redis"), (UInt32(SLUICE_PROTOCOL_CQL), "cql")]
            .filter { step.protocols & $0.0 != 0 }.map(\.1).joined(separator: ", ")
        let source = via.map { "\(name(flag)) (it receives sends from chain '\($0)')" } ?? "\(name(flag))"
        return "chain '\(step.chain)' step \(step.position): transform '\(step.name)' does not handle \(source)"
            + " (it handles: \(handles.isEmpty ? "nothing" : handles))"
    }

    /// The steps of chains reached only through sends that do not handle a protocol of the chains
    /// sending to them (directly or further up). Steps already refused for their own sources are not
    /// repeated.
    static func refusalsThroughSends(sourceProtocols: [String: UInt32], sendsTo: [String: [String]],
                                     steps: [String: [Step]]) -> [(step: Step, message: String)] {
        // Protocols reaching each chain through sends, with one sender named for the message.
        var reached: [String: (protocols: UInt32, via: String)] = [:]
        var work = Array(sourceProtocols.keys.sorted())
        var total = sourceProtocols
        while let chain = work.popLast() {
            let protocols = total[chain] ?? 0
            for target in sendsTo[chain] ?? [] {
                let before = total[target] ?? 0
                let after = before | protocols
                if after != before {
                    total[target] = after
                    let previous = reached[target]
                    reached[target] = ((previous?.protocols ?? 0) | (protocols & ~(sourceProtocols[target] ?? 0)),
                                       previous?.via ?? chain)
                    work.append(target)
                }
            }
        }
        var refusals: [(step: Step, message: String)] = []
        for (chain, through) in reached.sorted(by: { $0.key < $1.key }) {
            for step in steps[chain] ?? [] {
                if let message = refusal(step, reachedBy: through.protocols, via: through.via) {
                    refusals.append((step, message))
                }
            }
        }
        return refusals
    }
}

extension SluiceConfig.SourceKind {
    /// The SLUICE_PROTOCOL_* flag of the source's clients.
    var protocolFlag: UInt32 {
        switch self {
        case .redis: return UInt32(SLUICE_PROTOCOL_REDIS)
        case .cassandra: return UInt32(SLUICE_PROTOCOL_CQL)
        }
    }
}
