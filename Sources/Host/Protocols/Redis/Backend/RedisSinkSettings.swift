/// What of a sink only Redis uses (`SinkPlan.redis`).
struct RedisSinkSettings {
    /// `AUTH [username] password` as RESP, sent first on every connection to this backend (nil:
    /// the backend needs no credentials). Holds the secret: never log it.
    var authCommand: [UInt8]? = nil

    static func authCommand(_ credentials: SluiceConfig.Credentials) -> [UInt8] {
        let arguments = ["AUTH"] + (credentials.username.map { [$0] } ?? []) + [credentials.password]
        var bytes = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            bytes += Array("$\(argument.utf8.count)\r\n".utf8) + Array(argument.utf8) + [13, 10]
        }
        return bytes
    }
}
