import CFFI

/// Calls a plugin's control function through libffi by its declared signature:
/// `int32_t fn(void *config, sluice_control_call *ctl, <parameters>)`.
///
/// The arguments were converted and checked against the signature before (ControlSignature), so
/// nothing here can refuse them; the argument storage lives until the call returns.
enum ControlInvoker {
    struct PreparationFailed: Error, CustomStringConvertible {
        let status: Int
        var description: String { "libffi could not prepare the call (ffi_prep_cif status \(status))" }
    }

    static func call(_ function: UnsafeRawPointer, config: UnsafeMutableRawPointer?, ctl: OpaquePointer,
                     arguments: [ControlSignature.Argument]) throws -> Int32 {
        precondition(MemoryLayout<Bool>.size == 1, "C99 bool is passed as one byte")
        var types: [UnsafeMutablePointer<ffi_type>?] = [sluice_ffi_type_pointer(), sluice_ffi_type_pointer()]
        // Each value lives in its own allocation; `values` points at them, as ffi_call wants.
        var storage: [UnsafeMutableRawPointer] = []
        defer { for block in storage { block.deallocate() } }
        func store<T>(_ value: T) -> UnsafeMutableRawPointer {
            let block = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<T>.size, 8),
                                                         alignment: max(MemoryLayout<T>.alignment, 8))
            block.storeBytes(of: value, as: T.self)
            storage.append(block)
            return block
        }
        /// A copy of bytes that outlives the call (NUL-terminated when asked).
        func copy(_ bytes: [UInt8], terminated: Bool) -> UnsafeMutableRawPointer {
            let block = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + 1, alignment: 1)
            bytes.withUnsafeBytes { if let base = $0.baseAddress { block.copyMemory(from: base, byteCount: bytes.count) } }
            block.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self)
            storage.append(block)
            return block
        }
        var values: [UnsafeMutableRawPointer?] = [store(config), store(ctl)]
        for argument in arguments {
            switch argument {
            case .int64(let v):
                types.append(sluice_ffi_type_sint64())
                values.append(store(v))
            case .double(let v):
                types.append(sluice_ffi_type_double())
                values.append(store(v))
            case .bool(let v):
                types.append(sluice_ffi_type_bool())
                values.append(store(UInt8(v ? 1 : 0)))
            case .string(let bytes):
                types.append(sluice_ffi_type_pointer())
                values.append(store(UnsafeRawPointer(copy(bytes, terminated: true))))
            case .bytes(let bytes):
                types.append(sluice_ffi_type_pointer())
                values.append(store(UnsafeRawPointer(copy(bytes, terminated: false))))
                types.append(sluice_ffi_type_size_t())
                values.append(store(bytes.count))
            }
        }
        var cif = ffi_cif()
        let prepared = types.withUnsafeMutableBufferPointer { typeBuffer in
            sluice_ffi_prep_cif(&cif, UInt32(typeBuffer.count), sluice_ffi_type_sint32(), typeBuffer.baseAddress)
        }
        guard prepared == FFI_OK else { throw PreparationFailed(status: Int(prepared.rawValue)) }
        // libffi widens small integer returns to a full ffi_arg register.
        var result: ffi_arg = 0
        typealias Entry = @convention(c) () -> Void
        let entry = unsafeBitCast(function, to: Entry.self)
        types.withUnsafeMutableBufferPointer { _ in
            values.withUnsafeMutableBufferPointer { valueBuffer in
                ffi_call(&cif, entry, &result, valueBuffer.baseAddress)
            }
        }
        return Int32(truncatingIfNeeded: result)
    }
}
