import ArgumentParser
import Foundation
import SluiceHost

/// `sluice ctl --admin HOST:PORT [--token-env VAR] COMMAND`: talks to a running Sluice's admin
/// endpoint (config `admin:`).
struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Control a running Sluice through its admin endpoint.",
        subcommands: [CtlFunctions.self, CtlCall.self, CtlReload.self]
    )

    /// `--admin` and `--token-env` may come before the command (`sluice ctl --admin … call …`) or
    /// after it: ArgumentParser hands the parent's values of this group to the command.
    @OptionGroup var options: AdminOptions
}

/// What every ctl command needs: where the endpoint is and the token.
struct AdminOptions: ParsableArguments {
    @Option(help: "The admin endpoint: HOST:PORT, a bare PORT (127.0.0.1), or unix:PATH.")
    var admin: String

    @Option(help: "The environment variable holding the bearer token (as the config's admin.token_env).")
    var tokenEnv: String?

    func validate() throws {
        _ = try address()
        if let tokenEnv, ProcessInfo.processInfo.environment[tokenEnv] == nil {
            throw ValidationError("--token-env: environment variable '\(tokenEnv)' is not set")
        }
    }

    func address() throws -> AdminClient.Address {
        if admin.hasPrefix("unix:") { return .unixSocket(path: String(admin.dropFirst(5))) }
        if let port = Int(admin), (1...65535).contains(port) { return .tcp(host: "127.0.0.1", port: port) }
        guard let colon = admin.lastIndex(of: ":"), let port = Int(admin[admin.index(after: colon)...]),
              (1...65535).contains(port), colon != admin.startIndex
        else { throw ValidationError("--admin: expected HOST:PORT, PORT or unix:PATH, found '\(admin)'") }
        var host = String(admin[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .tcp(host: host, port: port)
    }

    var client: AdminClient {
        get throws {
            AdminClient(address: try address(), token: tokenEnv.flatMap { ProcessInfo.processInfo.environment[$0] })
        }
    }

    /// Sends a request; on anything but success prints the endpoint's error and exits non-zero:
    /// 1 for a function's error return or a refused reload, 2 for a call refused before calling
    /// (arguments, unknown function or step), 3 for authentication, 4 when unreachable.
    func send(_ method: HTTPMethodName, _ path: String, json: [String: Any]? = nil) throws -> AdminClient.Answer {
        let answer: AdminClient.Answer
        do {
            answer = try client.request(.init(rawValue: method.rawValue), path, json: json)
        } catch {
            FileHandle.standardError.write(Data("sluice ctl: cannot reach the admin endpoint \(admin): \(error)\n".utf8))
            throw ExitCode(4)
        }
        if answer.status == 200 { return answer }
        let message = answer.object["error"] as? String ?? answer.text
        switch answer.status {
        case 401:
            FileHandle.standardError.write(Data("sluice ctl: unauthorized (\(tokenEnv == nil ? "the endpoint needs a token: --token-env VAR" : "wrong token in \(tokenEnv!)")): \(message)\n".utf8))
            throw ExitCode(3)
        case 400, 404, 405:
            FileHandle.standardError.write(Data("sluice ctl: refused (nothing was called): \(message)\n".utf8))
            throw ExitCode(2)
        case 422:
            let status = answer.object["status_name"] as? String ?? "an error"
            FileHandle.standardError.write(Data("sluice ctl: the function returned \(status): \(message)\n".utf8))
            throw ExitCode(1)
        default:
            FileHandle.standardError.write(Data("sluice ctl: HTTP \(answer.status): \(message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

enum HTTPMethodName: String {
    case GET, POST
}

struct CtlFunctions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "functions",
        abstract: "List every control function: its parameters, help and the chain steps it can be called on.")

    @OptionGroup var options: AdminOptions

    func run() throws {
        let answer = try options.send(.GET, "/functions")
        let functions = answer.object["functions"] as? [[String: Any]] ?? []
        if functions.isEmpty { print("no control functions (no transform of the running config declares any)") }
        for f in functions {
            let plugin = f["plugin"] as? String ?? "?"
            let name = f["function"] as? String ?? "?"
            let parameters = f["parameters"] as? String ?? ""
            let steps = (f["steps"] as? [String] ?? []).joined(separator: ", ")
            print("\(plugin).\(name)(\(parameters))  steps: \(steps)")
            if let help = f["help"] as? String, !help.isEmpty { print("    \(help)") }
        }
    }
}

struct CtlCall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call PLUGIN.FUNCTION with the config of one chain step and print what it returns.")

    @OptionGroup var options: AdminOptions

    @Argument(help: "PLUGIN.FUNCTION (or TRANSFORM.FUNCTION), as `sluice ctl functions` lists them.")
    var function: String

    @Option(help: "The chain step whose config the function gets: CHAIN[N], e.g. main[0].")
    var step: String

    @Argument(help: "The function's arguments, converted by its declared parameters (put them after -- if one starts with a dash, e.g. -- -5).")
    var arguments: [String] = []

    func run() throws {
        let args = arguments
        let answer = try options.send(.POST, "/call", json: ["function": function, "step": step, "args": args])
        if let result = answer.object["result"] as? String { print(result) } else { print("OK") }
        if answer.object["published"] as? Bool == false {
            FileHandle.standardError.write(Data("sluice ctl: warning: the new settings did not reach every live connection within the wait\n".utf8))
        }
    }
}

struct CtlReload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload the configuration file and the plugin directory of the running Sluice.")

    @OptionGroup var options: AdminOptions

    func run() throws {
        let answer = try options.send(.POST, "/reload")
        print(answer.object["result"] as? String ?? "reloaded")
    }
}
