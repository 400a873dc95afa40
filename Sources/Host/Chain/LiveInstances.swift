import NIOConcurrencyHelpers
import PluginABI
import NIOCore

/// The live plugin instances of one transform step's config, across every event loop, so a
/// control function's `control_publish` can reach each of them on its own loop.
///
/// The lock is taken once when a connection creates its instance (instance_new runs under it, so a
/// control call never overlaps instance_new of the same config, as the header promises) and once
/// when it frees it; never per request.
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

    private let lock = NIOLock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    /// Runs `make` (the plugin's instance_new) exclusive of control calls on this config, and
    /// registers the instance it made when it returns `SLUICE_OK`.
    func create(on eventLoop: EventLoop, _ make: () -> (Int32, UnsafeMutableRawPointer?)) -> (Int32, Entry?) {
        lock.withLock {
            let (status, instance) = make()
            guard status == SLUICE_OK else { return (status, nil) }
            let entry = Entry(eventLoop: eventLoop, instance: instance)
            entries[ObjectIdentifier(entry)] = entry
            return (status, entry)
        }
    }

    /// Forgets an instance about to be freed. On its event loop, before instance_free.
    func remove(_ entry: Entry) {
        entry.isAlive = false
        lock.withLock { entries[ObjectIdentifier(entry)] = nil }
    }

    /// Runs `body` exclusive of instance_new of this config (a control call, config_free). `body`
    /// gets the instances registered at the moment it asks.
    func exclusively<T>(_ body: (_ current: () -> [Entry]) throws -> T) rethrows -> T {
        try lock.withLock {
            try body { Array(self.entries.values) }
        }
    }

    var count: Int { lock.withLock { entries.count } }
}
