import Dispatch
import Foundation
import Logging
import Metrics

/// The admin endpoint's requests and answers, whatever carries them (HTTP over TCP or a unix
/// socket: `AdminServer`; a supervisor forwarding to its workers).
///
/// Routes (JSON bodies and answers):
/// - `GET /functions`: every control function, its parameters, help and the steps it can be called on.
/// - `POST /call` `{"function": "PLUGIN.FUNCTION", "step": "CHAIN[N]", "args": ["…"]}`: calls it.
/// - `POST /reload`: reloads the configuration (when the server offers reload).
///
/// With a token configured, every request needs `Authorization: Bearer TOKEN` (compared in
/// constant time); without it the answer is 401 and nothing runs. Every request is logged: the
/// peer, the route, what was called and the result. The work runs on one serial queue (the
/// "admin thread" of the header), so control calls never overlap.
public final class AdminService: AdminHandling, @unchecked Sendable {
    public struct Request {
        public var method: String
        public var path: String
        /// The `Authorization` header, if any.
        public var authorization: String?
        public var body: [UInt8]
        /// Who asked ("127.0.0.1:51234", "unix socket"), for the log.
        public var peer: String
        public init(method: String, path: String, authorization: String?, body: [UInt8], peer: String) {
            self.method = method
            self.path = path
            self.authorization = authorization
            self.body = body
            self.peer = peer
        }
    }

    public struct Response {
        public var status: Int
        /// A JSON object.
        public var body: [UInt8]
    }

    /// What a reload reports: whether it switched, and the text to show (what changed, or why not).
    public typealias ReloadHandler = () -> (switched: Bool, text: String)

    let control: ControlPlane
    private let token: [UInt8]?
    private let reload: ReloadHandler?
    private let queue = DispatchQueue(label: "sluice.admin")
    private let log = Logger(label: "sluice.admin")

    /// Largest request body accepted.
    public static let maximumBodyBytes = 1 << 20

    init(control: ControlPlane, token: String?, reload: ReloadHandler?) {
        self.control = control
        self.token = token.map { Array($0.utf8) }
        self.reload = reload
    }

    /// Answers `request` on the admin queue; `completion` runs there.
    public func handle(_ request: Request, completion: @escaping (Response) -> Void) {
        queue.async { completion(self.answer(request)) }
    }

    private func answer(_ request: Request) -> Response {
        let response = route(request)
        // sluice_admin_requests_total{route, status}: every request, refused ones included.
        Counter(label: "sluice_admin_requests_total",
                dimensions: [("route", Self.knownRoutes.contains(request.path) ? request.path : "other"),
                             ("status", String(response.status))]).increment()
        return response
    }

    private static let knownRoutes: Set<String> = ["/functions", "/call", "/reload"]

    private func route(_ request: Request) -> Response {
        let route = "\(request.method) \(request.path)"
        guard authorized(request.authorization) else {
            log.warning("admin \(request.peer) \(route): refused, \(request.authorization == nil ? "no token" : "wrong token")")
            return Self.json(401, ["ok": false, "error": "unauthorized: this admin endpoint needs 'Authorization: Bearer TOKEN'"])
        }
        switch (request.method, request.path) {
        case ("GET", "/functions"):
            let listings = control.functions()
            log.info("admin \(request.peer) \(route): \(listings.count) function(s)")
            return Self.json(200, ["ok": true, "functions": listings.map { l -> [String: Any] in
                ["plugin": l.plugin, "transform": l.transform, "function": l.function,
                 "parameters": l.parameters, "help": l.help, "steps": l.steps]
            }])
        case ("POST", "/call"):
            return call(request, route: route)
        case ("POST", "/reload"):
            guard let reload else {
                log.warning("admin \(request.peer) \(route): reload not available")
                return Self.json(501, ["ok": false, "error": "reload not available in this build"])
            }
            let (switched, text) = reload()
            log.notice("admin \(request.peer) \(route): \(switched ? "reloaded" : "refused"): \(text)")
            return Self.json(switched ? 200 : 409, ["ok": switched, switched ? "result" : "error": text])
        case (_, "/functions"), (_, "/call"), (_, "/reload"):
            return Self.json(405, ["ok": false, "error": "method \(request.method) not allowed on \(request.path)"])
        default:
            return Self.json(404, ["ok": false, "error": "no route \(request.path) (routes: GET /functions, POST /call, POST /reload)"])
        }
    }

    private func call(_ request: Request, route: String) -> Response {
        guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let function = object["function"] as? String, let step = object["step"] as? String
        else {
            log.warning("admin \(request.peer) \(route): refused, malformed body")
            return Self.json(400, ["ok": false, "error": "expected a JSON body {\"function\": \"PLUGIN.FUNCTION\", \"step\": \"CHAIN[N]\", \"args\": [\"...\"]}"])
        }
        var arguments: [String] = []
        for value in object["args"] as? [Any] ?? [] {
            switch value {
            case let text as String: arguments.append(text)
            case let number as NSNumber: arguments.append(number.stringValue)
            default:
                return Self.json(400, ["ok": false, "error": "args: expected strings or numbers"])
            }
        }
        if object["args"] != nil, !(object["args"] is [Any]) {
            return Self.json(400, ["ok": false, "error": "args: expected an array"])
        }
        let what = "\(function) on \(step) (\(arguments.count) argument(s))"
        switch control.call(function, step: step, arguments: arguments) {
        case .refused(let message):
            log.warning("admin \(request.peer) \(route): \(what): refused before calling: \(message)")
            return Self.json(400, ["ok": false, "error": message, "called": false])
        case .returned(let status, let reply, let instances, let complete):
            var body: [String: Any] = ["ok": status == 0, "status": Int(status), "status_name": Self.statusName(status),
                                       "called": true, "instances": instances, "published": complete]
            if let reply { body[status == 0 ? "result" : "error"] = reply }
            if status == 0 {
                log.notice("admin \(request.peer) \(route): \(what): OK\(reply.map { ": \($0)" } ?? "")\(instances > 0 ? ", published to \(instances) instance(s)" : "")\(complete ? "" : " (not all within the wait)")")
            } else {
                log.warning("admin \(request.peer) \(route): \(what): returned \(Self.statusName(status))\(reply.map { ": \($0)" } ?? "")")
            }
            return Self.json(status == 0 ? 200 : 422, body)
        }
    }

    private func authorized(_ header: String?) -> Bool {
        Self.authorized(header, token: token)
    }

    /// Whether an `Authorization` header carries the bearer token (always, when there is none),
    /// compared in time that does not depend on where it differs.
    static func authorized(_ header: String?, token: [UInt8]?) -> Bool {
        guard let token else { return true }
        guard let header, header.hasPrefix("Bearer ") else { return false }
        return RedisClientAuth.constantTimeEquals(Array(header.utf8.dropFirst(7)), token)
    }

    /// The header's name for a status.
    static func statusName(_ status: Int32) -> String {
        let names = ["SLUICE_OK", "SLUICE_ERROR", "SLUICE_ERROR_INVALID_ARGUMENT", "SLUICE_ERROR_STATE",
                     "SLUICE_ERROR_MALFORMED", "SLUICE_END", "SLUICE_ERROR_NOT_FOUND", "SLUICE_ERROR_TIMEOUT"]
        return (0..<names.count).contains(Int(status)) ? names[Int(status)] : "status \(status)"
    }

    static func json(_ status: Int, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, body: Array(data) + [10])
    }
}

/// Something that answers admin requests: the local `AdminService`, or the supervisor's
/// `AdminForwarder`. `completion` may run on any thread.
public protocol AdminHandling: AnyObject {
    func handle(_ request: AdminService.Request, completion: @escaping (AdminService.Response) -> Void)
}
