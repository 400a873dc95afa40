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
/// never dereferenced; storage reuse cannot make an old handle reach a new object.
///
/// Layout of the 64 bits: slot index in bits 0–19, table id in 20–31, generation in 32–63. The
/// generation starts at 1, so a handle is never NULL. A slot's generation advances when its handle
/// is retired and wraps after 2^32 uses of the slot.
///
/// Resolving a handle (`resolve`) finds its table by the id in the handle (an index into a
/// process-wide registry) and checks that the table belongs to the calling thread by comparing
/// `pthread_self()` with the table's owner: no thread-specific read. Then a bounds check and two
/// compares. The registry has 4,095 entries; a process creating more tables than that (threads
/// that registered handles) gives the later ones the shared id 4095, found through the thread's
/// table as before (generations still tell their handles apart).
///
/// Two kinds of slot:
/// - **issued** (`register`): the slot retains its object until the handle is retired, and goes
///   back to the free list then (owned batches, timers, sends);
/// - **reserved** (`reserveSlot`, `lend`, `retire(slot:)`): a slot an owner keeps for its whole
///   life and lends an object through, once per use, *without retaining it*. `Call` reserves one
///   for itself and one for each lent batch: every hook costs a few stores instead of a free-list
///   round trip and a retain/release pair. Retiring advances the generation exactly as for an
///   issued slot, so a handle kept from an earlier use is refused; the owner guarantees that the
///   object lives while it is lent (it holds it, and retires or unreserves before letting go).
///
/// `HandleTable` is a value referring to the table's storage, which is never freed (like the
/// thread's event loop): passing it around costs no reference counting. The storage is only ever
/// touched from its own thread, so it needs no lock.
struct HandleTable {
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

    fileprivate struct Slot {
        /// The object while a handle of this slot is live (nil otherwise).
        var object: Unmanaged<AnyObject>?
        /// The transform step that used the slot last (kept after retiring, so a stale handle's
        /// misuse is counted and logged for it). Steps live as long as the process's plan.
        var step: Unmanaged<TransformStep>?
        var generation: UInt32 = 1
        var nextFree: Int32 = -1
        var kind: Kind = []
        /// Whether the table holds a reference on `object` (issued slots) or not (lent through a
        /// reserved slot).
        var retained = false
        /// Kept by an owner (`reserveSlot`): never on the free list.
        var reserved = false
    }

    /// The table's state. Allocated once per thread and never freed.
    fileprivate struct Storage {
        let id: UInt32
        /// The thread the table belongs to; 0 once that thread exited (its handles are then
        /// refused everywhere, even on a later thread that got the same pthread_t).
        var owner: UInt
        var slots: UnsafeMutablePointer<Slot>
        var capacity: Int
        var count: Int = 0
        var firstFree: Int32 = -1
        var refusedSinceLog = 0
        var nextLogNanoseconds: UInt64 = 0
        /// See `HandleTable.activeSession` and `activeStep` (not retained).
        var activeSession: Unmanaged<ChainSession>?
        var activeStep: Unmanaged<TransformStep>?
    }

    static let maxSlots = 1 << 20
    private static let indexMask: UInt = 0xF_FFFF
    private static let idShift: UInt = 20
    private static let idMask: UInt = 0xFFF
    /// The id shared by tables created after the registry filled up.
    private static let sharedID: UInt32 = 0xFFF

    private let storage: UnsafeMutablePointer<Storage>

    private init(storage: UnsafeMutablePointer<Storage>) {
        self.storage = storage
    }

    var id: UInt32 { storage.pointee.id }

    /// The client session whose plugin hook runs on this thread right now (set around every hook,
    /// completion and timer callback), for what a host function needs to know of the client but
    /// cannot be told through its arguments (the protocol a reply is encoded for).
    var activeSession: ChainSession? { storage.pointee.activeSession?.takeUnretainedValue() }
    /// The transform step whose hook runs on this thread right now (nil outside hooks).
    var activeStep: TransformStep? { storage.pointee.activeStep?.takeUnretainedValue() }

    /// Runs `body` (a hook of `step`'s plugin) with `session` and `step` as the thread's active
    /// ones: two stores and two restores, no reference counting (the caller keeps both alive).
    @inline(__always)
    func runningHook<R>(session: Unmanaged<ChainSession>, step: Unmanaged<TransformStep>, _ body: () -> R) -> R {
        let table = storage
        let (savedSession, savedStep) = (table.pointee.activeSession, table.pointee.activeStep)
        table.pointee.activeSession = session
        table.pointee.activeStep = step
        defer {
            table.pointee.activeSession = savedSession
            table.pointee.activeStep = savedStep
        }
        return body()
    }

    // MARK: the tables of all threads

    /// Tables by id (ids 0–4094), so that a handle leads to its table without a thread-specific
    /// read. An entry is written once, when its table is created (under `idLock`), and read by the
    /// table's own thread afterwards; another thread reading it (a plugin misusing a handle across
    /// threads) only reads the entry and the table's `owner`.
    nonisolated(unsafe) private static var registry: UnsafeMutablePointer<UnsafeMutablePointer<Storage>?>? = nil
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        // On thread exit the table is disowned: a handle of it is refused from then on, even on a
        // new thread that got the old one's pthread_t. Its objects are not released (as before).
        pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            pointer.assumingMemoryBound(to: Storage.self).pointee.owner = 0
        }
        return key
    }()
    private static let idLock = NSLock()
    nonisolated(unsafe) private static var nextID: UInt32 = 0

    /// The table of the calling thread (created on first use; never freed, like the thread's loop).
    static var current: HandleTable {
        if let existing = pthread_getspecific(key) {
            return HandleTable(storage: existing.assumingMemoryBound(to: Storage.self))
        }
        idLock.lock()
        defer { idLock.unlock() }
        if registry == nil {
            let entries = UnsafeMutablePointer<UnsafeMutablePointer<Storage>?>.allocate(capacity: Int(sharedID))
            entries.initialize(repeating: nil, count: Int(sharedID))
            registry = entries
        }
        let id = min(nextID, sharedID)
        nextID = id + 1
        let capacity = 64
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        let storage = UnsafeMutablePointer<Storage>.allocate(capacity: 1)
        storage.initialize(to: Storage(id: id, owner: Self.thisThread, slots: slots, capacity: capacity))
        if id < sharedID { registry![Int(id)] = storage }
        pthread_setspecific(key, storage)
        return HandleTable(storage: storage)
    }

    @inline(__always)
    private static var thisThread: UInt {
        #if canImport(Glibc)
        pthread_self()  // pthread_t is an integer here
        #else
        UInt(bitPattern: pthread_self())
        #endif
    }

    // MARK: resolving

    /// The object behind a live handle of the calling thread of one of `kinds`, or nil (and a
    /// rate-limited log line naming `function`) for NULL, a stale, foreign or wrong-kind handle.
    /// The object is not retained: it is alive while its handle is live, and the caller uses it
    /// before anything can retire the handle (or retains it).
    @inline(__always)
    static func resolve(_ handle: OpaquePointer?, _ kinds: Kind, _ function: StaticString)
        -> (object: Unmanaged<AnyObject>, kind: Kind)?
    {
        guard let handle else { return nil }
        let bits = UInt(bitPattern: handle)
        let id = Int((bits >> idShift) & idMask)
        guard id < Int(sharedID), let registry, let storage = registry[id], storage.pointee.owner == thisThread else {
            return resolveSlowly(bits, kinds, function)
        }
        return HandleTable(storage: storage).resolve(bits: bits, kinds, function)
    }

    /// A handle whose table is not found by id: the shared id, another thread's table, garbage.
    @inline(never)
    private static func resolveSlowly(_ bits: UInt, _ kinds: Kind, _ function: StaticString)
        -> (object: Unmanaged<AnyObject>, kind: Kind)?
    {
        current.resolve(bits: bits, kinds, function)
    }

    /// `resolve` against this table (which must be the calling thread's).
    func resolve(_ handle: OpaquePointer?, _ kinds: Kind, _ function: StaticString)
        -> (object: Unmanaged<AnyObject>, kind: Kind)?
    {
        guard let handle else { return nil }
        return resolve(bits: UInt(bitPattern: handle), kinds, function)
    }

    @inline(__always)
    private func resolve(bits: UInt, _ kinds: Kind, _ function: StaticString) -> (object: Unmanaged<AnyObject>, kind: Kind)? {
        let index = Int(bits & Self.indexMask)
        let table = storage
        guard (bits >> Self.idShift) & Self.idMask == UInt(table.pointee.id), index < table.pointee.count else {
            refused(function, kinds, bits)
            return nil
        }
        let slot = table.pointee.slots + index
        guard slot.pointee.generation == UInt32(truncatingIfNeeded: bits >> 32),
              !slot.pointee.kind.isDisjoint(with: kinds), let object = slot.pointee.object
        else {
            refused(function, kinds, bits)
            return nil
        }
        return (object, slot.pointee.kind)
    }

    /// Whether a handle is live in this table (no log line when it is not).
    func isLive(_ handle: OpaquePointer?) -> Bool {
        guard let handle else { return false }
        return liveIndex(UInt(bitPattern: handle)) != nil
    }

    private func liveIndex(_ bits: UInt) -> Int? {
        let index = Int(bits & Self.indexMask)
        let table = storage.pointee
        guard (bits >> Self.idShift) & Self.idMask == UInt(table.id), index < table.count,
              table.slots[index].generation == UInt32(truncatingIfNeeded: bits >> 32), table.slots[index].object != nil
        else { return nil }
        return index
    }

    // MARK: issued handles (retained)

    /// Issues a handle for `object` (retained until the handle is retired), on behalf of `step`
    /// (by default the step whose hook is running).
    func register(_ object: AnyObject, kind: Kind, step: TransformStep? = nil) -> OpaquePointer {
        let index = takeSlot()
        let slot = storage.pointee.slots + index
        slot.pointee.kind = kind
        slot.pointee.object = Unmanaged.passRetained(object)
        slot.pointee.retained = true
        slot.pointee.step = step.map { Unmanaged.passUnretained($0) } ?? storage.pointee.activeStep
        return pack(index: index, generation: slot.pointee.generation)
    }

    /// Ends a handle: its slot moves to the next generation (so the handle never resolves again)
    /// and releases the object; an issued slot goes back to the free list. Retiring a handle that
    /// is not live does nothing.
    func retire(_ handle: OpaquePointer?) {
        guard let handle, let index = liveIndex(UInt(bitPattern: handle)) else { return }
        let reserved = storage.pointee.slots[index].reserved
        let object = end(index)
        if !reserved { free(index) }
        object?.release()  // last: a deinit it triggers may register or retire other handles
    }

    // MARK: reserved slots (lent, not retained)

    /// A slot kept for its caller's repeated `lend`s until `unreserve`.
    func reserveSlot() -> Int32 {
        let index = takeSlot()
        storage.pointee.slots[index].reserved = true
        return Int32(index)
    }

    /// Issues a handle of reserved `slot` for `object` of `kind`, not retained: the caller keeps
    /// `object` alive until it retires the slot. The slot must not be live.
    @inline(__always)
    func lend(_ object: AnyObject, slot: Int32, kind: Kind, step: TransformStep) -> OpaquePointer {
        let pointer = storage.pointee.slots + Int(slot)
        assert(pointer.pointee.reserved && pointer.pointee.object == nil, "lending a live or unreserved slot")
        pointer.pointee.kind = kind
        pointer.pointee.object = Unmanaged.passUnretained(object)
        pointer.pointee.step = Unmanaged.passUnretained(step)
        return pack(index: Int(slot), generation: pointer.pointee.generation)
    }

    /// Ends the handle lent through reserved `slot` (if live): the slot moves to the next
    /// generation, so the handle is refused from now on, even after the slot is lent again.
    @inline(__always)
    func retire(slot: Int32) {
        let pointer = storage.pointee.slots + Int(slot)
        guard pointer.pointee.object != nil else { return }
        assert(pointer.pointee.reserved && !pointer.pointee.retained)
        _ = end(Int(slot))
    }

    /// Gives a reserved slot back (retiring its handle if live). From the table's own thread only;
    /// elsewhere (never expected) the slot is left as it is, with no object.
    func unreserve(slot: Int32) {
        guard storage.pointee.owner == Self.thisThread else { return }
        retire(slot: slot)
        storage.pointee.slots[Int(slot)].reserved = false
        free(Int(slot))
    }

    // MARK: slot bookkeeping

    private func takeSlot() -> Int {
        let table = storage
        if table.pointee.firstFree >= 0 {
            let index = Int(table.pointee.firstFree)
            table.pointee.firstFree = table.pointee.slots[index].nextFree
            table.pointee.slots[index].nextFree = -1
            return index
        }
        // A million live handles on one thread means a plugin leaks owned batches or timers.
        precondition(table.pointee.count < Self.maxSlots, "more than \(Self.maxSlots) live plugin handles on one thread")
        if table.pointee.count == table.pointee.capacity {
            let capacity = min(table.pointee.capacity * 2, Self.maxSlots)
            let grown = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
            grown.moveInitialize(from: table.pointee.slots, count: table.pointee.count)
            table.pointee.slots.deallocate()
            table.pointee.slots = grown
            table.pointee.capacity = capacity
        }
        let index = table.pointee.count
        (table.pointee.slots + index).initialize(to: Slot())
        table.pointee.count += 1
        return index
    }

    /// Moves slot `index` to its next generation with no object; returns the object if the table
    /// held a reference on it (for the caller to release).
    private func end(_ index: Int) -> Unmanaged<AnyObject>? {
        let slot = storage.pointee.slots + index
        let object = slot.pointee.retained ? slot.pointee.object : nil
        slot.pointee.object = nil
        slot.pointee.kind = []
        slot.pointee.retained = false
        slot.pointee.generation &+= 1
        if slot.pointee.generation == 0 { slot.pointee.generation = 1 }
        return object
    }

    private func free(_ index: Int) {
        storage.pointee.slots[index].nextFree = storage.pointee.firstFree
        storage.pointee.firstFree = Int32(index)
    }

    /// Number of live handles (tests).
    var liveCount: Int {
        (0..<storage.pointee.count).reduce(0) { $0 + (storage.pointee.slots[$1].object == nil ? 0 : 1) }
    }

    @inline(__always)
    private func pack(index: Int, generation: UInt32) -> OpaquePointer {
        OpaquePointer(bitPattern: UInt(index) | UInt(storage.pointee.id) << Self.idShift | UInt(generation) << 32)!
    }

    // MARK: refusals

    /// Counts a refused handle as a misuse of the transform that last used its slot (or, for a
    /// handle of another thread, of the one running now) and logs it, at most once a second per
    /// thread (with how many were refused since).
    @inline(never)
    private func refused(_ function: StaticString, _ kinds: Kind, _ bits: UInt) {
        guard bits != 0 else { return }  // NULL is an ordinary invalid argument, not a stale handle
        let table = storage
        let index = Int(bits & Self.indexMask)
        let ownSlot = (bits >> Self.idShift) & Self.idMask == UInt(table.pointee.id) && index < table.pointee.count
        let step = ownSlot ? table.pointee.slots[index].step?.takeUnretainedValue() ?? activeStep : activeStep
        step?.metrics.misused()
        table.pointee.refusedSinceLog += 1
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= table.pointee.nextLogNanoseconds else { return }
        table.pointee.nextLogNanoseconds = now + 1_000_000_000
        let more = table.pointee.refusedSinceLog > 1
            ? " (\(table.pointee.refusedSinceLog - 1) more refused handles in the last second)" : ""
        table.pointee.refusedSinceLog = 0
        let why: String
        if !ownSlot && (bits >> Self.idShift) & Self.idMask != UInt(table.pointee.id) {
            why = "not a handle of this thread"
        } else if ownSlot, table.pointee.slots[index].generation == UInt32(truncatingIfNeeded: bits >> 32),
                  table.pointee.slots[index].object != nil {
            why = "a \(table.pointee.slots[index].kind.name) handle, not a \(kinds.name) handle"
        } else {
            why = "stale (its \(kinds.name) was completed, freed or cancelled) or never issued"
        }
        let who = step.map { "\($0.label): " } ?? ""
        HostLog.plugins.warning("\(who)\(function): refused a \(kinds.name) handle 0x\(String(bits, radix: 16)): \(why)\(more)")
    }
}
