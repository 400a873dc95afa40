import PluginABI

/// The host side of `sluice_redis_cursor`: a pre-order walk over one reply's values, its state kept
/// in the caller's 64-byte cursor storage (base address, end, offset, batch handle, batch generation).
/// The batch is kept as its plugin handle, so a cursor over a batch that was freed since is refused.
enum ReplyCursor {
    private enum Slot: Int { case base = 0, end, offset, batch, generation }

    static func initialize(_ cursor: UnsafeMutablePointer<sluice_redis_cursor>, batch: OpaquePointer,
                           generation: UInt64, bytes: UnsafeRawBufferPointer) {
        withSlots(cursor) { slots in
            slots[Slot.base.rawValue] = UInt64(UInt(bitPattern: bytes.baseAddress))
            slots[Slot.end.rawValue] = UInt64(bytes.count)
            slots[Slot.offset.rawValue] = 0
            slots[Slot.batch.rawValue] = UInt64(UInt(bitPattern: batch))
            slots[Slot.generation.rawValue] = generation
        }
    }

    static func next(_ cursor: UnsafeMutablePointer<sluice_redis_cursor>,
                     _ out: UnsafeMutablePointer<sluice_redis_value>) -> Int32 {
        withSlots(cursor) { slots in
            let end = Int(slots[Slot.end.rawValue])
            let offset = Int(slots[Slot.offset.rawValue])
            guard offset < end else { return SLUICE_END }
            guard let batch = Batch.from(OpaquePointer(bitPattern: UInt(slots[Slot.batch.rawValue])), "redis_cursor_next"),
                  batch.generation == slots[Slot.generation.rawValue],
                  let base = UnsafeRawPointer(bitPattern: UInt(slots[Slot.base.rawValue]))
            else { return SLUICE_ERROR_STATE }
            let bytes = UnsafeRawBufferPointer(start: base, count: end)
            guard let header = RESPValueReader.header(bytes, at: offset) else { return SLUICE_ERROR_MALFORMED }
            out.pointee = sluice_redis_value(
                type: header.type, reserved: 0, integer: header.integer, count: header.count,
                bytes: sluice_host_view(ptr: base.advanced(by: header.payloadStart).assumingMemoryBound(to: UInt8.self),
                                        len: header.payloadLength))
            slots[Slot.offset.rawValue] = UInt64(header.next)
            return SLUICE_OK
        }
    }

    private static func withSlots<R>(_ cursor: UnsafeMutablePointer<sluice_redis_cursor>,
                                     _ body: (UnsafeMutableBufferPointer<UInt64>) -> R) -> R {
        UnsafeMutableRawPointer(cursor).withMemoryRebound(to: UInt64.self, capacity: 8) {
            body(UnsafeMutableBufferPointer(start: $0, count: 8))
        }
    }
}
