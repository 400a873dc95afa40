import Dispatch
import Foundation
import Logging
import NIOHTTP1

/// The admin endpoint of a supervisor: it has no plugins of its own, so it checks the token, logs
/// the request and forwards it to every worker's private admin socket, then combines the answers.
///
/// Each worker serves its `AdminService` on `DIR/worker-N.sock`, DIR being a directory only this
/// user can enter (`makeSocketDirectory`), whose path the workers inherit in the environment
/// variable `socketDirectoryVariable`; so the private sockets need no token of their own.
/// - `GET /functions`: the first worker that answers (every worker runs the same configuration).
/// - `POST /call`, `POST /reload`: every worker, one after another; the first worker that takes the
///   request is a canary: if it then gives no answer (the call killed it), the others are not called,
///   so a crashing control function kills one worker, not all. The answer is the first worker's when all agree,
///   else the first that differs from success (its error prefixed with the worker), and always a
///   `workers` list with each worker's status, so a call that reached only some workers (one was
///   restarting) says so.
public final class AdminForwarder: AdminHandling, @unchecked Sendable {
    /// The environment variable naming the directory of the workers' admin sockets.
    public static let socketDirectoryVariable = "SLUICE_ADMIN_SOCKET_DIR"

    private let token: [UInt8]?
    private let directory: String
    private let workers: Int
    private let queue = DispatchQueue(label: "sluice.admin.forward")
    private let log = Logger(label: "sluice.admin")

    public init(token: String?, socketDirectory: String, workers: Int) {
        self.token = token.map { Array($0.utf8) }
        directory = socketDirectory
        self.workers = workers
    }

    /// The socket worker `index` serves its admin endpoint on.
    public static func socketPath(directory: String, worker index: Int) -> String {
        directory + "/worker-\(index).sock"
    }

    /// A fresh directory for the workers' sockets that only this user can enter.
    public static func makeSocketDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "sluice-admin-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw AdminForwarderError(description: "cannot create a directory for the workers' admin sockets: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    public func handle(_ request: AdminService.Request, completion: @escaping (AdminService.Response) -> Void) {
        queue.async { completion(self.answer(request)) }
    }

    private func answer(_ request: AdminService.Request) -> AdminService.Response {
        let route = "\(request.method) \(request.path)"
        guard AdminService.authorized(request.authorization, token: token) else {
            log.warning("admin \(request.peer) \(route): refused, \(request.authorization == nil ? "no token" : "wrong token")")
            return AdminService.json(401, ["ok": false, "error": "unauthorized: this admin endpoint needs 'Authorization: Bearer TOKEN'"])
        }
        let method = HTTPMethod(rawValue: request.method)
        var answers: [(worker: Int, status: Int, object: [String: Any], text: String)] = []
        for index in 0..<workers {
            let client = AdminClient(address: .unixSocket(path: Self.socketPath(directory: directory, worker: index)), token: nil)
            do {
                let answer = try client.request(method, request.path, body: request.body)
                answers.append((index, answer.status, answer.object, answer.text))
                if request.method == "GET" { break }  // one worker's list is every worker's
            } catch let lost as AdminAnswerLost where request.method != "GET" {
                // The worker took the request and never answered: the call most likely killed it.
                // This worker is the canary: the others are not called, so a crashing control
                // function costs one worker (which the supervisor restarts), not all of them.
                let error = "worker \(index) took the request and gave no answer (\(lost)): it died or hung under the call; the supervisor restarts a worker that died. Not forwarded to the other workers."
                answers.append((index, 502, ["ok": false, "error": error], ""))
                for skipped in (index + 1)..<max(index + 1, workers) {
                    answers.append((skipped, 503, ["ok": false, "error": "worker \(skipped) not called: worker \(index) died or hung under this request"], ""))
                }
                break
            } catch {
                // Not reached (no connection): a GET tries the next worker; a call reports this one
                // as not reached and goes on (the first worker that takes it is the canary).
                answers.append((index, 503, ["ok": false, "error": "worker \(index) unreachable (restarting?): \(error)"], ""))
            }
        }
        let summary = answers.map { a -> [String: Any] in
            var entry: [String: Any] = ["worker": a.worker, "status": a.status]
            if let result = a.object["result"] { entry["result"] = result }
            if let error = a.object["error"] { entry["error"] = error }
            return entry
        }
        let reached = request.method == "GET" ? answers.filter { $0.status != 503 } : answers
        let failing = reached.first { $0.status != 200 }
        var chosen = failing ?? reached.first ?? answers[0]
        if failing != nil, answers.count > 1, let error = chosen.object["error"] as? String {
            chosen.object["error"] = "worker \(chosen.worker): \(error)"
        }
        chosen.object["workers"] = summary
        if request.method != "GET" {
            let line = answers.map { "worker \($0.worker): \($0.status)" }.joined(separator: ", ")
            log.notice("admin \(request.peer) \(route): forwarded to \(answers.count) worker(s): \(line)")
        }
        return AdminService.json(chosen.status, chosen.object)
    }
}

struct AdminForwarderError: Error, CustomStringConvertible {
    let description: String
}
