import SluiceSDK
#if canImport(Glibc)
import Glibc
#endif

/// tee: dual-writes every request batch to a second target (chain or sink) and answers from the
/// primary (the rest of this chain). Optionally compares the two answers.
final class Tee: Transform {
    static let name = "tee"
    static let summary = "sends every request to a second target too; answers from the primary"
    static let handlesResponses = true
    static let protocols: Protocols = [.redis, .cql]

    enum MismatchPolicy: String {
        case ignore, log, fail, chain
    }

    let target: Target
    /// The policy new connections start with; `set_policy` changes it (and publishes it to the
    /// live connections, which keep their own copy: the hooks never read this one).
    private(set) var policy: MismatchPolicy
    let mismatchChain: Target?
    let mismatches: Counter
    let shadowErrors: Counter
    /// Failed shadow requests and mismatches are logged a few per interval, the rest summarised:
    /// an outage of the shadow must not flood the log (one warning per failed batch did).
    let failureWarnings: WarningLimiter
    let mismatchWarnings: WarningLimiter

    init(config: ConfigNode, env: ConfigEnv) throws {
        try config.requireKeys(["target", "on_mismatch", "mismatch_chain", "warning_interval_ms"], in: "tee")
        guard let targetName = try config.string("target") else {
            throw ConfigError("target is required (the chain or sink to send a copy to)", at: config)
        }
        target = try env.target(targetName, at: config["target"])
        let policyText = try config.string("on_mismatch") ?? "ignore"
        guard let policy = MismatchPolicy(rawValue: policyText) else {
            throw ConfigError("on_mismatch: expected ignore, log, fail or chain, found '\(policyText)'",
                              at: config["on_mismatch"])
        }
        self.policy = policy
        if let chainName = try config.string("mismatch_chain") {
            guard policy == .chain else {
                throw ConfigError("mismatch_chain is only used with on_mismatch: chain", at: config["mismatch_chain"])
            }
            mismatchChain = try env.target(chainName, at: config["mismatch_chain"])
        } else if policy == .chain {
            throw ConfigError("on_mismatch: chain needs mismatch_chain: NAME", at: config["on_mismatch"])
        } else {
            mismatchChain = nil
        }
        var intervalMs: UInt64 = 10_000
        if let text = try config.string("warning_interval_ms") {
            guard let n = UInt64(text), n >= 1, n <= 86_400_000 else {
                throw ConfigError("warning_interval_ms: expected milliseconds from 1 to 86400000", at: config["warning_interval_ms"])
            }
            intervalMs = n
        }
        failureWarnings = WarningLimiter(intervalMilliseconds: intervalMs, burst: 1,
                                         what: "failed shadow batches of '\(target.name)'")
        mismatchWarnings = WarningLimiter(intervalMilliseconds: intervalMs, burst: 10,
                                          what: "mismatches with '\(target.name)'")
        mismatches = try env.counter("tee_mismatches")
        shadowErrors = try env.counter("tee_shadow_errors")
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance {
        TeeInstance(tee: self, env: env)
    }

    static let controlFunctions: [ControlFunction] = [
        .text("set_policy", parameter: "policy",
              help: "what a mismatch does from now on, on every connection of this step: ignore, log, fail (or chain, with mismatch_chain)") { config, ctl, policy in
            ControlCall.run(config, ctl, as: Tee.self) { tee, call in
                try tee.setPolicy(policy.map { String(cString: $0) } ?? "", call)
            }
        },
        .noArguments("policy", help: "the mismatch policy of this step now") { config, ctl in
            ControlCall.run(config, ctl, as: Tee.self) { tee, call in call.reply("on_mismatch: \(tee.policy.rawValue)") }
        },
    ]

    /// tee.set_policy: on the admin thread, never while makeInstance runs (the host's promise).
    func setPolicy(_ text: String, _ call: ControlCall) throws {
        guard let next = MismatchPolicy(rawValue: text) else {
            throw SluiceError("expected ignore, log, fail or chain, found '\(text)'")
        }
        guard next != .chain || mismatchChain != nil else {
            throw SluiceError("chain needs mismatch_chain in the config of this step")
        }
        policy = next
        call.publish { instance in (instance as? TeeInstance)?.policy = next }
        call.reply("on_mismatch: \(next.rawValue)")
    }
}

/// The two answers of one batch, whichever arrives first.
final class TeeCall {
    var shadow: SendResult?
    var primary: (call: Call, requests: Batch, responses: Batch)?

    /// A connection closed before the primary answered: the shadow's owned responses go back.
    deinit {
        if case .responses(let batch)? = shadow { batch.free() }
    }
}

final class TeeInstance: TransformInstance {
    let tee: Tee
    let env: InstanceEnv
    private var args = ArgumentViews(capacity: 2)

    /// Commands that may wait indefinitely: comparing would hold the primary's answer until the
    /// shadow's blocking command returned (if ever), so batches holding one are not compared.
    static let blocking: Set<String> = ["blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin",
                                        "bzpopmax", "bzmpop", "xread", "xreadgroup", "wait", "waitaof"]

    /// Commands whose replies describe the server or are random rather than the data (a connection
    /// id, the time, statistics, a random member, a scan cursor): two healthy servers answer them
    /// differently, so a difference is no mismatch.
    static let serverSpecific: Set<String> = [
        "hello", "client", "info", "time", "lastsave", "role", "memory", "slowlog", "latency", "config",
        "debug", "object", "acl", "pubsub", "publish", "spublish", "randomkey", "srandmember", "spop",
        "hrandfield", "zrandmember", "scan", "sscan", "hscan", "zscan",
    ]

    /// `system` or `system_…`, in any case (keyspace names are case-insensitive unless quoted,
    /// and no user keyspace may take these names).
    static func isServerKeyspace(_ name: UnsafeRawBufferPointer) -> Bool {
        let system = Array("system".utf8)
        guard name.count >= system.count, zip(name, system).allSatisfy({ $0 | 0x20 == $1 }) else { return false }
        return name.count == system.count || name[system.count] == UInt8(ascii: "_")
    }

    /// This connection's copy of the policy (set_policy publishes new ones on this event loop).
    var policy: Tee.MismatchPolicy

    init(tee: Tee, env: InstanceEnv) {
        self.tee = tee
        self.env = env
        policy = tee.policy
    }

    /// A client leaving after an outage writes the summary its warnings were held back for.
    deinit {
        if let line = tee.failureWarnings.flushIfExpired() { Log.warning("tee: \(line)") }
        if let line = tee.mismatchWarnings.flushIfExpired() { Log.warning("tee: \(line)") }
    }

    /// Whether request `index` asks something each server answers for itself, so replies that
    /// differ are no mismatch: on Redis a command such as INFO or RANDOMKEY (`serverSpecific`); on
    /// CQL a statement on one of the server's own keyspaces (`system`, `system_schema`,
    /// `system_auth`, …: its address, host id, tokens, schema versions), which drivers read on
    /// connecting, so `fail` must not refuse them.
    private func describesServer(_ requests: Batch, _ index: Int) -> Bool {
        if requests.isCQL {
            guard let statement = (try? requests.cqlStatement(at: index)) ?? nil else { return false }
            return Self.isServerKeyspace(statement.keyspace)
        }
        guard requests.arguments(at: index, into: &args) > 0, args[0].count <= 16 else { return false }
        return Self.serverSpecific.contains(args[0].asciiLowercased)
    }

    private func holdsBlockingCommand(_ requests: Batch) -> Bool {
        for i in 0..<requests.count where requests.arguments(at: i, into: &args) > 0 {
            let name = args[0]
            // Every blocking command starts with b, x or w: most commands are ruled out without a String.
            let first = name[0] | 0x20
            guard name.count >= 4, name.count <= 10, first == UInt8(ascii: "b") || first == UInt8(ascii: "x")
                || first == UInt8(ascii: "w")
            else { continue }
            if Self.blocking.contains(name.asciiLowercased) { return true }
        }
        return false
    }

    func onRequests(_ call: Call, _ requests: Batch) {
        let copy = requests.clone()
        if policy == .ignore || holdsBlockingCommand(requests) {
            env.send(copy, to: tee.target) { [tee] result in
                switch result {
                case .responses(let responses): responses.free()
                case .failed: tee.shadowErrors.add()
                }
            }
            call.pass()  // nothing to compare: the primary's responses go straight back
            return
        }
        let state = TeeCall()
        call.setState(state)
        env.send(copy, to: tee.target) { [weak self] result in
            state.shadow = result
            if let primary = state.primary { self?.compare(state, primary.call, primary.requests, primary.responses, result) }
        }
        call.forward()
    }

    func onResponses(_ call: Call, requests: Batch, responses: Batch) {
        guard let state = call.takeState(as: TeeCall.self) else {
            call.respondWithReceived()
            return
        }
        if let shadow = state.shadow {
            compare(state, call, requests, responses, shadow)
        } else {
            state.primary = (call, requests, responses)
        }
    }

    /// Both answers are in: compare, apply the policy, answer from the primary.
    private func compare(_ state: TeeCall, _ call: Call, _ requests: Batch, _ responses: Batch, _ shadow: SendResult) {
        state.primary = nil
        switch shadow {
        case .failed(let message):
            tee.shadowErrors.add()
            switch policy {
            case .fail:
                for i in 0..<responses.count {
                    putError("tee: \(tee.target.name) failed: \(message)", requests, responses, i)
                }
            case .log, .chain:
                let count = requests.count
                if let line = tee.failureWarnings.line({ "tee: \(tee.target.name) failed for \(count) request(s) from \(env.clientAddress): \(message)" }) {
                    Log.warning(line)
                }
            case .ignore:
                break
            }
        case .responses(let other):
            var mismatched: Batch?
            for i in 0..<min(responses.count, other.count)
            where !sameBytes(responses.bytes(at: i), other.bytes(at: i)) && !describesServer(requests, i) {
                tee.mismatches.add()
                switch policy {
                case .log:
                    let command = self.command(requests, i)
                    if let line = tee.mismatchWarnings.line({ "tee: mismatch for \(command) (request \(i) of \(requests.count)) from \(env.clientAddress): primary \(printable(responses.bytes(at: i), limit: 200)) vs \(tee.target.name) \(printable(other.bytes(at: i), limit: 200))" }) {
                        Log.warning(line)
                    }
                case .fail:
                    putError("tee: responses differ between primary and \(tee.target.name)", requests, responses, i)
                case .chain:
                    if mismatched == nil { mismatched = Batch.newRequests(protocol: requests.protocols) }
                    mismatched!.append(from: requests, index: i)
                case .ignore:
                    break
                }
            }
            other.free()
            state.shadow = nil
            if let mismatched, let chain = tee.mismatchChain {
                env.send(mismatched, to: chain) { result in
                    if case .responses(let r) = result { r.free() }
                }
            }
        }
        call.respondWithReceived()
    }

    /// Answers request i with an error in the batch's protocol (CQL: SERVER_ERROR on its stream).
    private func putError(_ message: String, _ requests: Batch, _ responses: Batch, _ i: Int) {
        if responses.isCQL {
            try? responses.putCQLError(.serverError, message, answering: requests, i, at: i)
        } else {
            responses.putError("ERR \(message)", at: i)
        }
    }

    /// What request i is, for a log line: the command name, or a CQL statement's start.
    private func command(_ requests: Batch, _ i: Int) -> String {
        if requests.isCQL {
            return (try? requests.cqlQuery(at: i)).flatMap { $0 }.map { printable($0, limit: 48) } ?? "a CQL request"
        }
        var args = ArgumentViews(capacity: 1)
        requests.arguments(at: i, into: &args)
        return args.count > 0 ? printable(args[0], limit: 32) : "?"
    }

    private func sameBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }
}
