import SluiceSDK

/// redirect: requests whose keys are hot (listed, or matching a glob) go to another target; the rest
/// stay on this chain. Responses come back in the client's order. On CQL, requests whose statements
/// touch a hot keyspace or table (`keyspaces:`, `tables:`) go to the target.
final class Redirect: Transform {
    static let name = "redirect"
    static let summary = "sends requests on hot keys (list or globs) to another chain or sink"
    static let handlesResponses = true
    static let protocols: Protocols = [.redis, .cql]

    let target: Target
    /// CQL: the keyspaces and tables whose statements go to the target (fixed by the config).
    let hotTables: HotTables
    /// The hot keys new connections start with; the control functions replace them (and publish
    /// them to live connections, which keep their own copy: the hooks never read this one).
    private(set) var hotKeys: HotKeys
    let redirected: Counter

    init(config: ConfigNode, env: ConfigEnv) throws {
        try config.requireKeys(["target", "keys", "patterns", "keyspaces", "tables"], in: "redirect")
        guard let targetName = try config.string("target") else {
            throw ConfigError("target is required (the chain or sink hot keys go to)", at: config)
        }
        target = try env.target(targetName, at: config["target"])
        let keys = Set(try config.strings("keys").map { Array($0.utf8) })
        let patterns = try config.strings("patterns").map { Array($0.utf8) }
        hotTables = try HotTables(keyspaces: config.strings("keyspaces"), tables: config.strings("tables"))
        guard !keys.isEmpty || !patterns.isEmpty || !hotTables.isEmpty else {
            throw ConfigError("give keys: [...] or patterns: [...] (Redis), keyspaces: [...] or tables: [...] (CQL)", at: config)
        }
        hotKeys = HotKeys(keys: keys, patterns: patterns)
        redirected = try env.counter("redirect_redirected")
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance { RedirectInstance(redirect: self, env: env) }

    static let controlFunctions: [ControlFunction] = [
        .text("add_key", parameter: "key", help: "make one more key hot, on every connection of this step") { config, ctl, key in
            change(config, ctl) { $0.keys.insert(Array(text(key).utf8)).inserted ? nil : "already hot" }
        },
        .text("remove_key", parameter: "key", help: "a listed key is no longer hot") { config, ctl, key in
            change(config, ctl) { $0.keys.remove(Array(text(key).utf8)) != nil ? nil : "not a listed key" }
        },
        .text("add_pattern", parameter: "pattern", help: "keys matching one more glob are hot") { config, ctl, pattern in
            change(config, ctl) { lists in
                let p = Array(text(pattern).utf8)
                if lists.patterns.contains(p) { return "already a pattern" }
                lists.patterns.append(p)
                return nil
            }
        },
        .text("remove_pattern", parameter: "pattern", help: "keys matching this glob are no longer hot") { config, ctl, pattern in
            change(config, ctl) { lists in
                let p = Array(text(pattern).utf8)
                guard let i = lists.patterns.firstIndex(of: p) else { return "not a pattern" }
                lists.patterns.remove(at: i)
                return nil
            }
        },
        .text("set_patterns", parameter: "patterns", help: "replace every pattern (separated by spaces; \"\" for none)") { config, ctl, patterns in
            change(config, ctl) { lists in
                lists.patterns = text(patterns).split(separator: " ").map { Array($0.utf8) }
                return nil
            }
        },
        .noArguments("list", help: "the hot keys and patterns of this step now") { config, ctl in
            ControlCall.run(config, ctl, as: Redirect.self) { redirect, call in call.reply(redirect.hotKeys.summary) }
        },
    ]

    private static func text(_ pointer: UnsafePointer<CChar>?) -> String { pointer.map { String(cString: $0) } ?? "" }

    /// Applies an edit of the key and pattern lists (nil: changed; text: why nothing changed, an
    /// error return) and publishes the result to every live connection.
    private static func change(_ config: UnsafeMutableRawPointer?, _ ctl: OpaquePointer?,
                               _ edit: (inout (keys: Set<[UInt8]>, patterns: [[UInt8]])) -> String?) -> Int32 {
        ControlCall.run(config, ctl, as: Redirect.self) { redirect, call in
            var lists = (keys: redirect.hotKeys.keys, patterns: redirect.hotKeys.patterns)
            if let unchanged = edit(&lists) { throw SluiceError(unchanged) }
            let next = HotKeys(keys: lists.keys, patterns: lists.patterns)
            redirect.hotKeys = next
            call.publish { instance in (instance as? RedirectInstance)?.hotKeys = next }
            call.reply(next.summary)
        }
    }
}

/// Where each request of a split batch went.
final class RedirectCall {
    enum Route: Equatable {
        case primary, hot
        /// Answered here with this error (a command mixing hot and regular keys, …).
        case refused(String)
        /// EXEC of a transaction in which a command was refused: sent to the primary as DISCARD and
        /// answered with Redis's EXECABORT, as Redis does when a command fails to queue.
        case execAbort

        /// Whether the request is sent to the primary (possibly rewritten).
        var staysOnPrimary: Bool { self == .primary || self == .execAbort }
    }
    let routes: [Route]
    /// CQL: each request's header, for the errors answered here.
    let cqlHeaders: [CQL.Header]?
    var hotResult: SendResult?
    var primary: (call: Call, responses: Batch)?
    init(routes: [Route], cqlHeaders: [CQL.Header]? = nil) {
        self.routes = routes
        self.cqlHeaders = cqlHeaders
    }

    /// A connection closed before the primary answered: the hot target's owned responses go back.
    deinit {
        if case .responses(let batch)? = hotResult { batch.free() }
    }
}

final class RedirectInstance: TransformInstance {
    let redirect: Redirect
    let env: InstanceEnv
    private var args = ArgumentViews(capacity: 8)
    private var keys = KeyPositions()
    /// Between MULTI and EXEC/DISCARD: the transaction runs on the primary, so a hot key in it is
    /// refused rather than executed at once elsewhere.
    private var inTransaction = false
    /// A command of the open transaction was refused here, so its EXEC must abort.
    private var transactionRefused = false

    /// This connection's copy of the hot keys (the control functions publish new ones on this loop).
    var hotKeys: HotKeys

    init(redirect: Redirect, env: InstanceEnv) {
        self.redirect = redirect
        self.env = env
        hotKeys = redirect.hotKeys
    }

    /// The route of request i of a batch; a refusal inside MULTI dooms the transaction.
    private func route(_ requests: Batch, _ i: Int) throws -> RedirectCall.Route {
        if requests.isCQL { return try cqlRoute(requests, i) }
        let route = try plainRoute(requests, i)
        if inTransaction, case .refused = route { transactionRefused = true }
        return route
    }

    /// Where the host's command table (redis_keys) puts the keys decides: all hot goes to the
    /// target, none hot stays, a mix is refused. Commands the table does not know, or whose
    /// arguments contradict their key spec, stay on the primary (which answers them).
    private func plainRoute(_ requests: Batch, _ i: Int) throws -> RedirectCall.Route {
        let argc = requests.arguments(at: i, into: &args)
        guard argc > 0 else { return .primary }
        if let boundary = transactionRoute(args[0]) { return boundary }
        // Most requests have no argument that can be hot: no key lookup at all.
        guard (1..<argc).contains(where: { hotKeys.mayBeHot(args[$0]) }),
              try requests.keyPositions(at: i, into: &keys) == .known else { return .primary }
        let hot = keys.reduce(0) { $0 + (hotKeys.isHot(args[$1]) ? 1 : 0) }
        if hot == 0 { return .primary }
        if inTransaction {
            return .refused("ERR redirect: hot keys inside MULTI are not supported (the transaction runs on the primary)")
        }
        return hot == keys.count ? .hot : .refused("ERR redirect: command mixes hot and regular keys")
    }

    /// CQL: hot when every statement of the request touches a hot keyspace or table, refused when a
    /// BATCH mixes them. Statements the host cannot read (an EXECUTE it did not see prepared) stay.
    private func cqlRoute(_ requests: Batch, _ i: Int) throws -> RedirectCall.Route {
        let tables = redirect.hotTables
        guard !tables.isEmpty else { return .primary }
        let count = requests.cqlStatementCount(at: i)
        var hot = 0
        for s in 0..<count {
            guard let statement = try requests.cqlStatement(at: i, statement: s) else { continue }
            if tables.isHot(keyspace: statement.keyspace, table: statement.table) { hot += 1 }
        }
        if hot == 0 { return .primary }
        return hot == count ? .hot : .refused("redirect: a BATCH mixes hot and regular tables")
    }

    /// MULTI, EXEC, DISCARD and RESET open or close the transaction; nil for any other command.
    private func transactionRoute(_ name: UnsafeRawBufferPointer) -> RedirectCall.Route? {
        if name.equalsIgnoringCase("multi") {
            inTransaction = true
        } else if name.equalsIgnoringCase("exec") {
            defer { inTransaction = false; transactionRefused = false }
            if inTransaction, transactionRefused { return .execAbort }
        } else if name.equalsIgnoringCase("discard") || name.equalsIgnoringCase("reset") {
            inTransaction = false
            transactionRefused = false
        } else {
            return nil
        }
        return .primary
    }

    func onRequests(_ call: Call, _ requests: Batch) throws {
        let count = requests.count
        var routes: [RedirectCall.Route]?
        for i in 0..<count {
            let r = try route(requests, i)
            if r != .primary {
                if routes == nil { routes = Array(repeating: .primary, count: count) }
                routes![i] = r
            }
        }
        guard let routes else {
            call.pass()  // nothing hot: the responses need no merging
            return
        }
        let headers = requests.isCQL ? try (0..<count).map { try requests.cqlHeader(at: $0) } : nil
        let state = RedirectCall(routes: routes, cqlHeaders: headers)
        let hot = Batch.newRequests(protocol: requests.protocols)
        for (i, r) in routes.enumerated() where r == .hot { hot.append(from: requests, index: i) }
        for i in (0..<count).reversed() where !routes[i].staysOnPrimary { requests.remove(at: i) }
        for i in 0..<count where routes[i] == .execAbort {
            // Indexes below i that left the batch shift it down.
            let position = routes[..<i].filter(\.staysOnPrimary).count
            requests.putCommand([Array("DISCARD".utf8)], at: position)
        }
        redirect.redirected.add(hot.count)
        call.setState(state)
        if hot.count > 0 {
            env.send(hot, to: redirect.target) { [weak self] result in
                state.hotResult = result
                if let primary = state.primary { self?.merge(state, primary.call, primary.responses, result) }
            }
        } else {
            hot.free()
            state.hotResult = .responses(Batch.newResponses(protocol: requests.protocols))
        }
        call.forward()
    }

    func onResponses(_ call: Call, requests: Batch, responses: Batch) {
        guard let state = call.takeState(as: RedirectCall.self) else {
            call.respondWithReceived()
            return
        }
        if let hot = state.hotResult {
            merge(state, call, responses, hot)
        } else {
            state.primary = (call, responses)
        }
    }

    /// Both parts answered: rebuild the response batch in the client's order.
    private func merge(_ state: RedirectCall, _ call: Call, _ primary: Batch, _ hot: SendResult) {
        state.primary = nil
        let merged = Batch.newResponses(protocol: primary.protocols)
        /// An error answered here, in the client's protocol (CQL: on the request's stream).
        func putError(_ message: String, _ code: CQL.ErrorCode, at i: Int) {
            if let header = state.cqlHeaders?[i] {
                try? merged.putCQLError(code, message, version: header.version, stream: header.stream, at: i)
            } else {
                merged.putError(message, at: i)
            }
        }
        var p = 0, h = 0
        for (i, r) in state.routes.enumerated() {
            switch r {
            case .primary:
                merged.insert(from: primary, index: p, at: i)
                p += 1
            case .refused(let message):
                putError(message, .invalid, at: i)
            case .execAbort:
                p += 1  // DISCARD's +OK
                merged.putError("EXECABORT Transaction discarded because of previous errors.", at: i)
            case .hot:
                switch hot {
                case .responses(let batch): merged.insert(from: batch, index: h, at: i)
                case .failed(let message):
                    let text = "redirect: \(redirect.target.name) failed: \(message)"
                    putError(state.cqlHeaders == nil ? "ERR " + text : text, .serverError, at: i)
                }
                h += 1
            }
        }
        if case .responses(let batch) = hot { batch.free() }
        state.hotResult = nil
        call.respond(merged)
    }
}
