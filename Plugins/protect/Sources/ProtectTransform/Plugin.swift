import SluiceSDK

/// The plugin's entry point: one transform, `protect`.
@_cdecl("sluice_plugin_init")
public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafeRawPointer? {
    SluicePlugin.initialize(host: host, name: "protect", version: "1.0.0", transforms: [Protect.self])
}
