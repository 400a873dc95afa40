import NIOConcurrencyHelpers
import PluginABI

/// The descriptor each private plugin copy's `sluice_plugin_init` returned, so that init runs once
/// per loaded object as the header promises, however often a hot reload reads the plugin directory
/// again: an unchanged file is the same copy (`PrivatePluginCopies`), which dlopen returns as the
/// object already loaded, and its descriptor is taken from here. A plugin that refused to load is
/// not remembered (its init runs again at the next reload).
final class PluginDescriptors: @unchecked Sendable {
    static let shared = PluginDescriptors()

    private let byCopy = NIOLockedValueBox<[String: UnsafePointer<sluice_plugin_descriptor>]>([:])

    /// The descriptor of the copy at `path`, initialising it with `initialize` the first time.
    func descriptor(copy path: String,
                    initialize: () -> UnsafePointer<sluice_plugin_descriptor>?) -> UnsafePointer<sluice_plugin_descriptor>? {
        if let known = byCopy.withLockedValue({ $0[path] }) { return known }
        guard let descriptor = initialize() else { return nil }
        byCopy.withLockedValue { $0[path] = descriptor }
        return descriptor
    }
}
