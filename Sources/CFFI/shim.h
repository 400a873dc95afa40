/* libffi (apt: libffi-dev), as the host uses it to call plugins' control functions. The inline
 * helpers hand Swift the addresses of libffi's type descriptors and its default ABI, which Swift
 * cannot take from C globals and enum macros directly. */
#include <ffi.h>
#include <stddef.h>

static inline ffi_type *sluice_ffi_type_pointer(void) { return &ffi_type_pointer; }
static inline ffi_type *sluice_ffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *sluice_ffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *sluice_ffi_type_double(void) { return &ffi_type_double; }
/* C99 bool is one byte on every ABI Sluice builds for (checked in ControlInvoker). */
static inline ffi_type *sluice_ffi_type_bool(void) { return &ffi_type_uint8; }
static inline ffi_type *sluice_ffi_type_size_t(void) {
  return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
}
/* ffi_prep_cif with the platform's default calling convention. */
static inline ffi_status sluice_ffi_prep_cif(ffi_cif *cif, unsigned int count, ffi_type *result, ffi_type **arguments) {
  return ffi_prep_cif(cif, FFI_DEFAULT_ABI, count, result, arguments);
}
