import Foundation

/// Starting the admin endpoint: in a single process, in a supervised worker (on its private unix
/// socket), and in a supervisor (the configured address, forwarding to every worker).
extension Sluice {
    /// Starts the admin endpoint the config asks for (nil when it has no `admin:`). `reload` is
    /// what `POST /reload` runs (nil: the route answers "reload not available"). `worker`: the
    /// index of a supervised worker, which serves its endpoint on its private unix socket for the
    /// supervisor to forward to (nil when no supervisor set one up). Stop it with
    /// `AdminServer.stop()` before the server. With `server`, control calls reach the steps of its
    /// current configuration generation (after a reload, the new one's).
    public static func startAdmin(_ prepared: Prepared, worker: Int? = nil, server: SluiceServer? = nil,
                                  reload: AdminService.ReloadHandler? = nil) throws -> AdminServer? {
        guard let settings = prepared.config.admin else { return nil }
        let plan = prepared.plan
        let currentPlan: () -> RuntimePlan? = server.map { server in { server.currentPlan } } ?? { plan }
        if let worker {
            guard let directory = ProcessInfo.processInfo.environment[AdminForwarder.socketDirectoryVariable] else { return nil }
            // Only this user can enter the directory: the private socket needs no token.
            let service = AdminService(control: ControlPlane(currentPlan: currentPlan), token: nil, reload: reload)
            let server = try AdminServer(unixSocketPath: AdminForwarder.socketPath(directory: directory, worker: worker),
                                         service: service)
            HostLog.host.info("admin endpoint of worker \(worker) on \(server.boundAddress)")
            return server
        }
        let service = AdminService(control: ControlPlane(currentPlan: currentPlan), token: settings.token, reload: reload)
        do {
            let server = try AdminServer(host: settings.host, port: settings.port, service: service)
            HostLog.host.info("admin endpoint on \(server.boundAddress)\(settings.token == nil ? " (no token: loopback only)" : " (bearer token from \(settings.tokenVariable ?? "?"))")")
            return server
        } catch {
            throw ListenFailure.explaining(error, config: prepared.config)
        }
    }

    /// The supervisor's admin endpoint (nil when the config has no `admin:`): it listens where the
    /// config says, checks the token and forwards every request to each of `workers` workers. Call
    /// before spawning them: it sets the environment variable that tells them where to serve.
    public static func startSupervisorAdmin(_ config: SluiceConfig, workers: Int) throws -> (server: AdminServer, socketDirectory: String)? {
        guard let settings = config.admin else { return nil }
        let directory = try AdminForwarder.makeSocketDirectory()
        setenv(AdminForwarder.socketDirectoryVariable, directory, 1)
        let forwarder = AdminForwarder(token: settings.token, socketDirectory: directory, workers: workers)
        do {
            let server = try AdminServer(host: settings.host, port: settings.port, service: forwarder)
            HostLog.host.info("admin endpoint on \(server.boundAddress), forwarding to \(workers) worker(s)\(settings.token == nil ? " (no token: loopback only)" : " (bearer token from \(settings.tokenVariable ?? "?"))")")
            return (server, directory)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw ListenFailure.explaining(error, config: config)
        }
    }

    /// An admin service for the prepared config without a listener of its own.
    public static func adminService(_ prepared: Prepared, token: String?, reload: AdminService.ReloadHandler? = nil) -> AdminService {
        let plan = prepared.plan
        return AdminService(control: ControlPlane(currentPlan: { plan }), token: token, reload: reload)
    }
}
