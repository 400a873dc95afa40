import SluiceSDK

/// The entry point the host looks up.
@_cdecl("sluice_plugin_init")
public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafeRawPointer? {
    SluicePlugin.initialize(host: host, name: "redirect", version: "1.0.0", transforms: [Redirect.self])
}
