import NIOConcurrencyHelpers
import PluginABI
import NIOCore

/// The live plugin instances of one transform step's config, across every event loop, so a
/// control function's `control_publish` can reach each of them on its own loop.
///
/// Two locks, always taken in this order:
/// - `exclusion`: held by instance_new, a control call and config_free of this config, so a control
///   call never overlaps instance_new (as the header promises). A connection opened on this step
///   while a control function runs therefore waits for it on its event loop.
/// - `registry`: guards `entries` only, held for a dictionary update or a snapshot. Removing an
///   instance (connection close) takes only this one, so closing never waits for a control call;
///   an instance removed during a call is not in the snapshot taken at its end, or is skipped by
///   `isAlive` on its loop.
/// Neither is taken per request.
final class LiveInstances {
    /// One instance and the event loop it lives on.
    final class Entry {
        let eventLoop: EventLoop
        let instance: UnsafeMutableRawPointer?
        /// False from just before instance_free on; read and written on `eventLoop` only.
        var isAlive = true
        init(eventLoop: EventLoop, instance: UnsafeMutableRawPointer?) {
            self.eventLoop = eventLoop
            self.instance = instance
        }
    }

    private let exclusion = NIOLock()
    private let registry = NIOLock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    /// What `create` did.
    enum Creation {
        /// instance_new returned `SLUICE_OK`; the instance is registered.
        case made(Entry)
        /// instance_new returned this error status.
        case refused(Int32)
        /// The config was already freed (config_free ran): instance_new was not called.
        case configFreed
    }

    /// Runs `make` (the plugin's instance_new) exclusive of control calls and of config_free on
    /// this config, and registers the instance it made when it returns `SLUICE_OK`. `hasConfig` is
    /// read under the same lock: a freed config never reaches instance_new (a second line of
    /// defence; a session never starts on an ended generation in the first place).
    func create(on eventLoop: EventLoop, hasConfig: () -> Bool,
                _ make: () -> (Int32, UnsafeMutableRawPointer?)) -> Creation {
        exclusion.withLock {
            guard hasConfig() else { return .configFreed }
            let (status, instance) = make()
            guard status == SLUICE_OK else { return .refused(status) }
            let entry = Entry(eventLoop: eventLoop, instance: instance)
            registry.withLock { entries[ObjectIdentifier(entry)] = entry }
            return .made(entry)
        }
    }

    /// Forgets an instance about to be freed. On its event loop, before instance_free; does not wait
    /// for a control call in progress.
    func remove(_ entry: Entry) {
        entry.isAlive = false
        registry.withLock { entries[ObjectIdentifier(entry)] = nil }
    }

    /// Runs `body` exclusive of instance_new of this config (a control call, config_free). `body`
    /// gets the instances registered at the moment it asks.
    func exclusively<T>(_ body: (_ current: () -> [Entry]) throws -> T) rethrows -> T {
        try exclusion.withLock {
            try body { self.registry.withLock { Array(self.entries.values) } }
        }
    }

    var count: Int { registry.withLock { entries.count } }
}
