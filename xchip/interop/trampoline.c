/* The XLA FFI handler through which `jax.jit` programs on the CPU backend call xchip.
 *
 * One handler serves every xchip program: the custom call carries an i64 attribute,
 * `xchip_program`, naming the program in xchip's registry, and the handler passes it, with
 * the input and output buffers' data pointers and element counts, to the one callback
 * registered by xchip/interop/ffi.py (a ctypes function that runs the program in Python).
 *
 * Plain C11 against `xla/ffi/api/c_api.h` (shipped in jaxlib; no C++ and no XLA sources):
 * the C++ `ffi.h` binding would do the same version handshake and attribute decoding, but
 * needs a C++ compiler and grows with every jaxlib. Built by xchip.native.shared_library,
 * whose cache key covers the header, so each jaxlib gets its own build.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xla/ffi/api/c_api.h"

/* Returns 0 on success, or an XLA_FFI_Error_Code with a message written to `err`. */
typedef int (*xchip_program_callback)(int64_t program, int64_t n_in, void *const *ins, const int64_t *in_sizes,
                                      int64_t n_out, void *const *outs, const int64_t *out_sizes, char *err,
                                      size_t err_len);

static xchip_program_callback callback = NULL;

void xchip_ffi_set_callback(xchip_program_callback cb) { callback = cb; }

/* The FFI API version this file was compiled against, as the handler reports it to XLA. */
void xchip_ffi_header_version(int *major, int *minor) {
  *major = XLA_FFI_API_MAJOR;
  *minor = XLA_FFI_API_MINOR;
}

static XLA_FFI_Error *fail(const XLA_FFI_CallFrame *frame, XLA_FFI_Error_Code code, const char *message) {
  XLA_FFI_Error_Create_Args args;
  memset(&args, 0, sizeof args);
  args.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  args.message = message;   /* XLA copies it */
  args.errc = code;
  return frame->api->XLA_FFI_Error_Create(&args);
}

static int64_t elements(const XLA_FFI_Buffer *b) {
  int64_t n = 1;
  for (int64_t d = 0; d < b->rank; ++d) n *= b->dims[d];
  return n;
}

/* Buffers of up to this many inputs and outputs live on the stack; more are malloc'ed. */
#define XCHIP_STACK_BUFFERS 32

XLA_FFI_Error *xchip_ffi_handler(XLA_FFI_CallFrame *frame) {
  /* XLA first calls every handler with a metadata extension to learn which FFI version it
   * was built for (ffi.h does this for C++ handlers); a newer minor than the framework's is
   * rejected, which is why the cache key covers the header. */
  if (frame->extension_start && frame->extension_start->type == XLA_FFI_Extension_Metadata) {
    XLA_FFI_Metadata_Extension *ext = (XLA_FFI_Metadata_Extension *)frame->extension_start;
    ext->metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    ext->metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    ext->metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    ext->metadata->traits = 0;
    return NULL;
  }
  if (frame->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;

  int64_t program = -1;
  for (int64_t i = 0; i < frame->attrs.size; ++i) {
    const XLA_FFI_ByteSpan *name = frame->attrs.names[i];
    if (name->len == 13 && memcmp(name->ptr, "xchip_program", 13) == 0) {
      const XLA_FFI_Scalar *s = (const XLA_FFI_Scalar *)frame->attrs.attrs[i];
      if (frame->attrs.types[i] != XLA_FFI_AttrType_SCALAR || s->dtype != XLA_FFI_DataType_S64)
        return fail(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, "xchip: attribute 'xchip_program' is not an i64");
      program = *(const int64_t *)s->value;
    }
  }
  if (program < 0)
    return fail(frame, XLA_FFI_Error_Code_INVALID_ARGUMENT, "xchip: custom call without an 'xchip_program' attribute");
  if (callback == NULL)
    return fail(frame, XLA_FFI_Error_Code_FAILED_PRECONDITION, "xchip: no program callback registered");

  int64_t n_in = frame->args.size, n_out = frame->rets.size, n = n_in + n_out;
  void *stack_ptrs[2 * XCHIP_STACK_BUFFERS];
  int64_t stack_sizes[2 * XCHIP_STACK_BUFFERS];
  void **ptrs = stack_ptrs;
  int64_t *sizes = stack_sizes;
  if (n > 2 * XCHIP_STACK_BUFFERS) {
    ptrs = malloc(n * sizeof *ptrs);
    sizes = malloc(n * sizeof *sizes);
    if (!ptrs || !sizes) {
      free(ptrs);
      free(sizes);
      return fail(frame, XLA_FFI_Error_Code_RESOURCE_EXHAUSTED, "xchip: out of memory");
    }
  }
  for (int64_t i = 0; i < n_in; ++i) {
    const XLA_FFI_Buffer *b = (const XLA_FFI_Buffer *)frame->args.args[i];
    ptrs[i] = b->data;
    sizes[i] = elements(b);
  }
  for (int64_t i = 0; i < n_out; ++i) {
    const XLA_FFI_Buffer *b = (const XLA_FFI_Buffer *)frame->rets.rets[i];
    ptrs[n_in + i] = b->data;
    sizes[n_in + i] = elements(b);
  }
  char message[2048];
  message[0] = '\0';
  int code = callback(program, n_in, ptrs, sizes, n_out, ptrs + n_in, sizes + n_in, message, sizeof message);
  if (ptrs != stack_ptrs) {
    free(ptrs);
    free(sizes);
  }
  if (code == 0) return NULL;
  if (code < 0 || code > XLA_FFI_Error_Code_UNAUTHENTICATED) code = XLA_FFI_Error_Code_UNKNOWN;
  message[sizeof message - 1] = '\0';
  return fail(frame, (XLA_FFI_Error_Code)code, message[0] ? message : "xchip: program failed (no message)");
}
