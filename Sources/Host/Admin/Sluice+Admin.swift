/// Starting the admin endpoint of a running server.
extension Sluice {
    /// Starts the admin endpoint the config asks for (nil when it has no `admin:`). `reload` is
    /// what `POST /reload` runs (nil: the route answers "reload not available"). Stop it with
    /// `AdminServer.stop()` before the server.
    public static func startAdmin(_ prepared: Prepared, reload: AdminService.ReloadHandler? = nil) throws -> AdminServer? {
        guard let settings = prepared.config.admin else { return nil }
        let plan = prepared.plan
        let service = AdminService(control: ControlPlane(currentPlan: { plan }), token: settings.token, reload: reload)
        do {
            let server = try AdminServer(host: settings.host, port: settings.port, service: service)
            HostLog.host.info("admin endpoint on \(server.boundAddress)\(settings.token == nil ? " (no token: loopback only)" : " (bearer token from \(settings.tokenVariable ?? "?"))")")
            return server
        } catch {
            throw ListenFailure.explaining(error, config: prepared.config)
        }
    }

    /// An admin service for the prepared config without a listener of its own (a supervisor's
    /// worker serving it on a unix socket with `AdminServer(unixSocketPath:service:)`).
    public static func adminService(_ prepared: Prepared, token: String?, reload: AdminService.ReloadHandler? = nil) -> AdminService {
        let plan = prepared.plan
        return AdminService(control: ControlPlane(currentPlan: { plan }), token: token, reload: reload)
    }
}
