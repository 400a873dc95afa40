#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The handles that cross the ABI as opaque pointers (`sluice_call*`, `sluice_batch*`,
/// `sluice_timer*`, `sluice_send*`), made safe to misuse.
///
/// A handle is not a pointer to a host object: it is a slot index, the id of the table (one per
/// thread) and the slot's generation, packed into the pointer's bits. Every host function resolves
/// it here: a handle whose slot has moved on to a later generation (a completed call, a fired or
/// cancelled timer, a freed batch), of another thread's table, or of another kind is refused and
/// never dereferenced; storage reuse cannot make an old handle reach a new object. Resolving costs
/// a thread-specific read, a bounds check and two compares.
///
/// Layout of the 64 bits: slot index in bits 0–23, table id in 24–31, generation in 32–63. The
/// generation starts at 1, so a handle is never NULL. A slot's generation advances when its handle
/// is retired and wraps after 2^32 uses of the slot.
///
/// A table is only ever touched from its own thread (the event loop whose connections registered
/// the handles), so it needs no lock.
final class HandleTable {
    /// What a handle stands for; a handle resolves only as the kind it was issued for.
    struct Kind: OptionSet {
        let rawValue: UInt8
        static let call = Kind(rawValue: 1)
        /// A batch the host lends for the length of a hook's call.
        static let lentBatch = Kind(rawValue: 2)
        /// A batch the plugin owns (batch_new, batch_clone, a send completion).
        static let ownedBatch = Kind(rawValue: 4)
        static let timer = Kind(rawValue: 8)
        static let send = Kind(rawValue: 16)
        static let batch: Kind = [.lentBatch, .ownedBatch]

        var name: String {
            switch self {
            case .call: return "call"
            case .lentBatch: return "lent batch"
            case .ownedBatch: return "owned batch"
            case .batch: return "batch"
            case .timer: return "timer"
            case .send: return "send"
            default: return "handle"
            }
        }
    }

    private struct Slot {
        var generation: UInt32 = 1
        var kind: Kind = []
        /// Retained while the handle is live.
        var object: Unmanaged<AnyObject>?
        var nextFree: Int32 = -1
        /// The transform step that used the slot last (kept after retiring, so a stale handle's
        /// misuse is counted and logged for it). Steps live as long as the process's plan.
        unowned(unsafe) var step: TransformStep?
    }

    static let maxSlots = 1 << 24
    let id: UInt32
    private var slots: [Slot] = []
    private var firstFree: Int32 = -1
    private var refusedSinceLog = 0
    /// The client session whose plugin hook runs on this thread right now (set around every hook,
    /// completion and timer callback), for what a host function needs to know of the client but
    /// cannot be told through its arguments (the protocol a reply is encoded for).
    unowned(unsafe) var activeSession: ChainSession?
    /// The transform step whose hook runs on this thread right now (nil outside hooks).
    unowned(unsafe) var activeStep: TransformStep?
    private var nextLogNanoseconds: UInt64 = 0

    private init(id: UInt32) {
        self.id = id
    }

    // MARK: the current thread's table

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static let idLock = NSLock()
    private static var nextID: UInt32 = 0

    /// The table of the calling thread (created on first use; never freed, like the thread's loop).
    static var current: HandleTable {
        if let existing = pthread_getspecific(key) {
            return Unmanaged<HandleTable>.fromOpaque(existing).takeUnretainedValue()
        }
        idLock.lock()
        let id = nextID & 0xFF  // more than 256 threads share ids; generations still tell handles apart
        nextID &+= 1
        idLock.unlock()
        let table = HandleTable(id: id)
        pthread_setspecific(key, Unmanaged.passRetained(table).toOpaque())
        return table
    }

    // MARK: handles

    /// Issues a handle for `object` (retained until the handle is retired), on behalf of `step`
    /// (by default the step whose hook is running).
    func register(_ object: AnyObject, kind: Kind, step: TransformStep? = nil) -> OpaquePointer {
        let index: Int
        if firstFree >= 0 {
            index = Int(firstFree)
            firstFree = slots[index].nextFree
        } else {
            // 16 million live handles on one thread means a plugin leaks owned batches or timers.
            precondition(slots.count < Self.maxSlots, "more than \(Self.maxSlots) live plugin handles on one thread")
            index = slots.count
            slots.append(Slot())
        }
        slots[index].kind = kind
        slots[index].object = Unmanaged.passRetained(object)
        slots[index].nextFree = -1
        slots[index].step = step ?? activeStep
        return Self.pack(index: index, table: id, generation: slots[index].generation)
    }

    /// The object behind a live handle of one of `kinds`, or nil (and a rate-limited log line naming
    /// `function`) for NULL, a stale, foreign or wrong-kind handle.
    @inline(__always)
    func resolve(_ handle: OpaquePointer?, _ kinds: Kind, _ function: StaticString) -> (object: AnyObject, kind: Kind)? {
        guard let handle else { return nil }
        let bits = UInt(bitPattern: handle)
        let index = Int(bits & 0xFF_FFFF)
        guard (bits >> 24) & 0xFF == UInt(id), index < slots.count,
              slots[index].generation == UInt32(truncatingIfNeeded: bits >> 32),
              !slots[index].kind.isDisjoint(with: kinds), let object = slots[index].object
        else {
            refused(function, kinds, bits)
            return nil
        }
        return (object.takeUnretainedValue(), slots[index].kind)
    }

    /// Whether a handle is live (no log line when it is not).
    func isLive(_ handle: OpaquePointer?) -> Bool {
        guard let handle else { return false }
        let bits = UInt(bitPattern: handle)
        let index = Int(bits & 0xFF_FFFF)
        return (bits >> 24) & 0xFF == UInt(id) && index < slots.count
            && slots[index].generation == UInt32(truncatingIfNeeded: bits >> 32) && slots[index].object != nil
    }

    /// Ends a handle: its slot moves to the next generation (so the handle never resolves again)
    /// and releases the object. Retiring a handle that is not live does nothing.
    func retire(_ handle: OpaquePointer?) {
        guard let handle, isLive(handle) else { return }
        let index = Int(UInt(bitPattern: handle) & 0xFF_FFFF)
        let object = slots[index].object
        slots[index].object = nil
        slots[index].kind = []
        slots[index].generation &+= 1
        if slots[index].generation == 0 { slots[index].generation = 1 }
        slots[index].nextFree = firstFree
        firstFree = Int32(index)
        object?.release()  // last: a deinit it triggers may register or retire other handles
    }

    /// Number of live handles (tests).
    var liveCount: Int { slots.reduce(0) { $0 + ($1.object == nil ? 0 : 1) } }

    private static func pack(index: Int, table: UInt32, generation: UInt32) -> OpaquePointer {
        OpaquePointer(bitPattern: UInt(index) | UInt(table) << 24 | UInt(generation) << 32)!
    }

    /// Counts a refused handle as a misuse of the transform that last used its slot (or, for a
    /// handle of another thread, of the one running now) and logs it, at most once a second per
    /// thread (with how many were refused since).
    private func refused(_ function: StaticString, _ kinds: Kind, _ bits: UInt) {
        guard bits != 0 else { return }  // NULL is an ordinary invalid argument, not a stale handle
        let slotIndex = Int(bits & 0xFF_FFFF)
        let ownSlot = (bits >> 24) & 0xFF == UInt(id) && slotIndex < slots.count
        let step = ownSlot ? slots[slotIndex].step ?? activeStep : activeStep
        step?.metrics.misused()
        refusedSinceLog += 1
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= nextLogNanoseconds else { return }
        nextLogNanoseconds = now + 1_000_000_000
        let more = refusedSinceLog > 1 ? " (\(refusedSinceLog - 1) more refused handles in the last second)" : ""
        refusedSinceLog = 0
        let why: String
        let index = Int(bits & 0xFF_FFFF)
        if (bits >> 24) & 0xFF != UInt(id) {
            why = "not a handle of this thread"
        } else if index < slots.count, slots[index].generation == UInt32(truncatingIfNeeded: bits >> 32),
                  slots[index].object != nil {
            why = "a \(slots[index].kind.name) handle, not a \(kinds.name) handle"
        } else {
            why = "stale (its \(kinds.name) was completed, freed or cancelled) or never issued"
        }
        let who = step.map { "\($0.label): " } ?? ""
        HostLog.plugins.warning("\(who)\(function): refused a \(kinds.name) handle 0x\(String(bits, radix: 16)): \(why)\(more)")
    }
}
