import SluiceSDK

/// debug-printer: logs every request and response (printable, truncated) and changes nothing.
final class DebugPrinter: Transform {
    static let name = "debug-printer"
    static let summary = "logs every request and response at INFO; forwards everything unchanged"
    static let handlesResponses = true
    static let protocols: Protocols = [.redis, .cql]

    let maxBytes: Int
    let prefix: String

    init(config: ConfigNode, env: ConfigEnv) throws {
        try config.requireKeys(["max_bytes", "prefix"], in: "debug-printer")
        if let text = try config.string("max_bytes") {
            guard let n = Int(text), n > 0, n <= 1 << 20 else {
                throw ConfigError("max_bytes: expected an integer from 1 to 1048576", at: config["max_bytes"])
            }
            maxBytes = n
        } else {
            maxBytes = 200
        }
        prefix = try config.string("prefix") ?? "debug-printer"
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance { DebugPrinterInstance(printer: self, env: env) }
}

final class DebugPrinterInstance: TransformInstance {
    let printer: DebugPrinter
    let client: String
    private var args = ArgumentViews(capacity: 8)

    init(printer: DebugPrinter, env: InstanceEnv) {
        self.printer = printer
        client = env.clientAddress
    }

    func onRequests(_ call: Call, _ requests: Batch) {
        if requests.isCQL {
            for i in 0..<requests.count {
                Log.info("\(printer.prefix) \(client) request: \(CQLRendering.request(requests, i, limit: printer.maxBytes))")
            }
            call.forward()
            return
        }
        for i in 0..<requests.count {
            let argc = requests.arguments(at: i, into: &args)
            var budget = printer.maxBytes
            var parts: [String] = []
            // Credentials (AUTH, HELLO AUTH, CONFIG SET requirepass, MIGRATE AUTH, ACL SETUSER >pw…)
            // are never logged.
            let secret = Credentials.secretArguments(args, argc: argc)
            for a in 0..<argc where budget > 0 {
                parts.append(secret.contains(a) ? "(redacted)" : printable(args[a], limit: budget))
                budget -= args[a].count
            }
            if argc > parts.count { parts.append("…(\(argc) args)") }
            Log.info("\(printer.prefix) \(client) request: \(parts.joined(separator: " "))")
        }
        call.forward()
    }

    func onResponses(_ call: Call, requests: Batch, responses: Batch) {
        if responses.isCQL {
            for i in 0..<responses.count {
                Log.info("\(printer.prefix) \(client) response: \(CQLRendering.response(responses, i, limit: printer.maxBytes))")
            }
            call.respondWithReceived()
            return
        }
        for i in 0..<responses.count {
            var policy = Credentials.ReplyPolicy.none
            if i < requests.count {
                let argc = requests.arguments(at: i, into: &args)
                policy = Credentials.replyPolicy(args, argc: argc)
            }
            Log.info("\(printer.prefix) \(client) response: \(render(responses, i, policy))")
        }
        call.respondWithReceived()
    }

    /// A short rendering of a reply: its type and first values.
    private func render(_ responses: Batch, _ index: Int, _ policy: Credentials.ReplyPolicy) -> String {
        var out = ""
        var shown = 0
        var previousNamesSecret = false  // CONFIG GET: the value before this one names a secret parameter
        for value in responses.values(at: index) {
            if out.count >= printer.maxBytes || shown >= 16 {
                out += " …"
                break
            }
            let bytes = UnsafeRawBufferPointer(start: value.bytes.ptr, count: value.bytes.len)
            let isString = value.type == Int32(SLUICE_REDIS_SIMPLE_STRING) || value.type == Int32(SLUICE_REDIS_BULK_STRING)
                || value.type == Int32(SLUICE_REDIS_VERBATIM)
            let namesSecret = previousNamesSecret
            previousNamesSecret = policy == .configValues && isString && bytes.count <= 32
                && Credentials.secretParameters.contains(bytes.asciiLowercased)
            if isString, (policy == .allStrings || (policy == .configValues && namesSecret)) {
                out += "(redacted) "
                shown += 1
                continue
            }
            switch value.type {
            case Int32(SLUICE_REDIS_SIMPLE_STRING): out += "+\(printable(bytes, limit: printer.maxBytes)) "
            case Int32(SLUICE_REDIS_ERROR), Int32(SLUICE_REDIS_BLOB_ERROR): out += "error(\(printable(bytes, limit: printer.maxBytes))) "
            case Int32(SLUICE_REDIS_INTEGER): out += "(integer) \(value.integer) "
            case Int32(SLUICE_REDIS_BOOLEAN): out += value.integer != 0 ? "true " : "false "
            case Int32(SLUICE_REDIS_NULL): out += "(nil) "
            case Int32(SLUICE_REDIS_ARRAY): out += "array[\(value.count)] "
            case Int32(SLUICE_REDIS_MAP): out += "map[\(value.count)] "
            case Int32(SLUICE_REDIS_SET): out += "set[\(value.count)] "
            case Int32(SLUICE_REDIS_PUSH): out += "push[\(value.count)] "
            case Int32(SLUICE_REDIS_ATTRIBUTE): out += "attributes[\(value.count)] "
            default: out += "\"\(printable(bytes, limit: printer.maxBytes))\" "
            }
            shown += 1
        }
        return out.isEmpty ? "(no reply: delivered out of band)" : out
    }
}

