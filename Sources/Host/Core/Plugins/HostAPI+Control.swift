import PluginABI

/// The host functions ABI 1.2 adds for control functions: the reply text of a call, and publishing
/// new settings to a config's live instances. Both only work during a control call (see
/// `ControlCallState`); a stale handle is refused with SLUICE_ERROR_STATE.
extension HostAPI {
    static func addControl(to api: inout sluice_host_api) {
        api.control_reply = { ctl, text, length in
            ControlCallState.shared.reply(ctl, text, Int(bitPattern: UInt(length)))
        }
        api.control_publish = { ctl, apply, data, done in
            ControlCallState.shared.publish(ctl, apply, data, done)
        }
    }
}
