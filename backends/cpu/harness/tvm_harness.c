/* A minimal stand-in for TVM's runtime, enough to call TVM-compiled kernels on a machine
 * (or an emulator) that has no libtvm_runtime: xchip cross-compiles kernels for ARM64 and
 * runs them under qemu-aarch64 with this harness linked in.
 *
 * What a TVM 0.27 LLVM-built module needs from its runtime, and what this file provides:
 *
 *   - Kernels are tvm_ffi "safe calls": int __tvm_ffi_<name>(void* self, const TVMFFIAny* args,
 *     int32_t num_args, TVMFFIAny* result). Tensor arguments are passed here as
 *     kTVMFFIDLTensorPtr (a bare DLTensor*), which the generated argument checks accept.
 *   - Runtime calls, linked directly (system-lib style) or through "context symbols": pointer
 *     variables named __<Function> that TVM's library loader fills in when it loads a DSO.
 *     Both are provided; main() fills every context symbol the kernel object defines (they are
 *     weak references here, so absent ones stay NULL).
 *       TVMBackendAllocWorkspace / TVMBackendFreeWorkspace  64-byte aligned malloc/free
 *       TVMBackendParallelLaunch / TVMBackendParallelBarrier  pthreads, XCHIP_NUM_THREADS tasks
 *                                                             (default 4; 1 runs serially)
 *       TVMFFIErrorSetRaisedFromCStr(Parts)                  keeps the message, printed on failure
 *       TVMFFIEnvCheckSignals                                returns 0
 *       TVMFFIFunctionCall, TVMFFIEnvModLookupFromImports    fail: no packed-function imports
 *       TVMFFIHandleInitOnce / TVMFFIHandleDeinitOnce        mutex-guarded
 *
 * Usage: harness SPEC. SPEC is a text file written by backends/cpu/cross.py:
 *     func <name>
 *     tensor in|out <path> <dlpack type code> <bits> <lanes> <ndim> <dim0> <dim1> ...
 *     int <value>
 *     float <value>
 * Arguments are passed in the order listed. "in" tensors are read from raw little-endian files
 * (C order); after the call, "out" tensors are written to their paths. The kernel's function
 * table (xchip_kernels) is generated per kernel object by cross.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

/* ---------------------------------------------------------------- the kernel table */

typedef struct {
  const char* name;
  TVMFFISafeCallType fn;
} xchip_kernel_entry;

extern const xchip_kernel_entry xchip_kernels[]; /* generated: {name, fn}..., {NULL, NULL} */

/* ---------------------------------------------------------------- errors */

static char g_error[8192];
static pthread_mutex_t g_error_lock = PTHREAD_MUTEX_INITIALIZER;

void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
  pthread_mutex_lock(&g_error_lock);
  snprintf(g_error, sizeof g_error, "%s: %s", kind ? kind : "Error", message ? message : "");
  pthread_mutex_unlock(&g_error_lock);
}

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts) {
  pthread_mutex_lock(&g_error_lock);
  size_t used = (size_t)snprintf(g_error, sizeof g_error, "%s: ", kind ? kind : "Error");
  for (int32_t i = 0; i < num_parts && used < sizeof g_error; ++i) {
    if (parts[i] == NULL) continue;
    used += (size_t)snprintf(g_error + used, sizeof g_error - used, "%s", parts[i]);
  }
  pthread_mutex_unlock(&g_error_lock);
}

static void set_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&g_error_lock);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  pthread_mutex_unlock(&g_error_lock);
  va_end(ap);
}

int TVMFFIEnvCheckSignals(void) { return 0; }

int TVMFFIFunctionCall(TVMFFIObjectHandle func, TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)func; (void)args; (void)num_args; (void)result;
  set_error("RuntimeError: the xchip harness cannot call packed functions (TVMFFIFunctionCall)");
  return -1;
}

int TVMFFIEnvModLookupFromImports(TVMFFIObjectHandle library_ctx, const char* func_name,
                                  TVMFFIObjectHandle* out) {
  (void)library_ctx; (void)out;
  set_error("RuntimeError: the xchip harness has no imported function '%s'", func_name ? func_name : "?");
  return -1;
}

static pthread_mutex_t g_once_lock = PTHREAD_MUTEX_INITIALIZER;

int TVMFFIHandleInitOnce(void** handle_addr, int (*init_func)(void** result)) {
  int rc = 0;
  pthread_mutex_lock(&g_once_lock);
  if (*handle_addr == NULL) rc = init_func(handle_addr);
  pthread_mutex_unlock(&g_once_lock);
  return rc;
}

int TVMFFIHandleDeinitOnce(void** handle_addr, int (*deinit_func)(void* handle)) {
  int rc = 0;
  pthread_mutex_lock(&g_once_lock);
  if (*handle_addr != NULL) {
    rc = deinit_func(*handle_addr);
    *handle_addr = NULL;
  }
  pthread_mutex_unlock(&g_once_lock);
  return rc;
}

/* ---------------------------------------------------------------- workspace */

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
  (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;
  void* p = NULL;
  if (posix_memalign(&p, 64, nbytes ? (size_t)nbytes : 1) != 0) return NULL;
  return p;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  free(ptr);
  return 0;
}

/* ---------------------------------------------------------------- parallel launch */

typedef struct {
  void* sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv; /* tvm/runtime/c_backend_api.h */

typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

typedef struct {
  FTVMParallelLambda flambda;
  void* cdata;
  TVMParallelGroupEnv* env;
  int task_id;
  int rc;
} task_arg;

static void* run_task(void* p) {
  task_arg* t = (task_arg*)p;
  t->rc = t->flambda(t->task_id, t->env, t->cdata);
  return NULL;
}

static int g_num_threads = 4;
static long g_parallel_launches = 0;

int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task) {
  int n = num_task > 0 ? num_task : g_num_threads;
  TVMParallelGroupEnv env = {NULL, n};
  pthread_barrier_t barrier;
  ++g_parallel_launches;
  if (n == 1) return flambda(0, &env, cdata);
  if (pthread_barrier_init(&barrier, NULL, (unsigned)n) != 0) {
    set_error("RuntimeError: pthread_barrier_init failed");
    return -1;
  }
  env.sync_handle = &barrier;
  task_arg* tasks = (task_arg*)calloc((size_t)n, sizeof(task_arg));
  pthread_t* threads = (pthread_t*)calloc((size_t)n, sizeof(pthread_t));
  int rc = 0;
  for (int i = 0; i < n; ++i) {
    tasks[i] = (task_arg){flambda, cdata, &env, i, 0};
    if (i > 0 && pthread_create(&threads[i], NULL, run_task, &tasks[i]) != 0) {
      /* No thread: a barrier would deadlock, so give up loudly. */
      fprintf(stderr, "xchip harness: pthread_create failed (%s)\n", strerror(errno));
      exit(3);
    }
  }
  run_task(&tasks[0]); /* the calling thread is task 0, as in TVM's thread pool */
  for (int i = 1; i < n; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < n; ++i) rc = rc ? rc : tasks[i].rc;
  pthread_barrier_destroy(&barrier);
  free(tasks);
  free(threads);
  return rc;
}

int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv* penv) {
  (void)task_id;
  if (penv->sync_handle != NULL) pthread_barrier_wait((pthread_barrier_t*)penv->sync_handle);
  return 0;
}

/* ---------------------------------------------------------------- context symbols */

/* Defined (weak, NULL) by the kernel object when its code calls through them. */
extern void* __TVMBackendAllocWorkspace __attribute__((weak));
extern void* __TVMBackendFreeWorkspace __attribute__((weak));
extern void* __TVMBackendParallelLaunch __attribute__((weak));
extern void* __TVMBackendParallelBarrier __attribute__((weak));
extern void* __TVMFFIErrorSetRaisedFromCStr __attribute__((weak));
extern void* __TVMFFIErrorSetRaisedFromCStrParts __attribute__((weak));
extern void* __TVMFFIFunctionCall __attribute__((weak));
extern void* __TVMFFIEnvModLookupFromImports __attribute__((weak));
extern void* __TVMFFIEnvCheckSignals __attribute__((weak));
extern void* __TVMFFIHandleInitOnce __attribute__((weak));
extern void* __TVMFFIHandleDeinitOnce __attribute__((weak));
extern void* __tvm_ffi__library_ctx __attribute__((weak));

static int g_library_ctx_dummy;

#define SET_CONTEXT(sym, fn) \
  do {                       \
    if (&sym != NULL) sym = (void*)(fn); \
  } while (0)

static void init_context_symbols(void) {
  SET_CONTEXT(__TVMBackendAllocWorkspace, TVMBackendAllocWorkspace);
  SET_CONTEXT(__TVMBackendFreeWorkspace, TVMBackendFreeWorkspace);
  SET_CONTEXT(__TVMBackendParallelLaunch, TVMBackendParallelLaunch);
  SET_CONTEXT(__TVMBackendParallelBarrier, TVMBackendParallelBarrier);
  SET_CONTEXT(__TVMFFIErrorSetRaisedFromCStr, TVMFFIErrorSetRaisedFromCStr);
  SET_CONTEXT(__TVMFFIErrorSetRaisedFromCStrParts, TVMFFIErrorSetRaisedFromCStrParts);
  SET_CONTEXT(__TVMFFIFunctionCall, TVMFFIFunctionCall);
  SET_CONTEXT(__TVMFFIEnvModLookupFromImports, TVMFFIEnvModLookupFromImports);
  SET_CONTEXT(__TVMFFIEnvCheckSignals, TVMFFIEnvCheckSignals);
  SET_CONTEXT(__TVMFFIHandleInitOnce, TVMFFIHandleInitOnce);
  SET_CONTEXT(__TVMFFIHandleDeinitOnce, TVMFFIHandleDeinitOnce);
  SET_CONTEXT(__tvm_ffi__library_ctx, &g_library_ctx_dummy);
}

/* ---------------------------------------------------------------- the call */

#define MAX_ARGS 256
#define MAX_DIMS 16

typedef struct {
  int is_tensor, is_out;
  char path[4096];
  DLTensor t;
  int64_t shape[MAX_DIMS];
  size_t nbytes;
} arg_slot;

static size_t tensor_bytes(const DLTensor* t) {
  size_t n = 1;
  for (int i = 0; i < t->ndim; ++i) n *= (size_t)t->shape[i];
  return n * (((size_t)t->dtype.bits * t->dtype.lanes + 7) / 8);
}

static int die(const char* fmt, const char* what) {
  fprintf(stderr, "xchip harness: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc != 2) return die("usage: %s SPEC", argv[0]);
  const char* env_threads = getenv("XCHIP_NUM_THREADS");
  if (env_threads && atoi(env_threads) > 0) g_num_threads = atoi(env_threads);
  init_context_symbols();

  FILE* spec = fopen(argv[1], "r");
  if (!spec) return die("cannot open spec %s", argv[1]);
  static arg_slot slots[MAX_ARGS];
  static TVMFFIAny args[MAX_ARGS];
  char func[512] = {0}, word[32];
  int nargs = 0;
  while (fscanf(spec, "%31s", word) == 1) {
    if (strcmp(word, "func") == 0) {
      if (fscanf(spec, "%511s", func) != 1) return die("bad spec: %s", "func");
      continue;
    }
    if (nargs >= MAX_ARGS) return die("too many arguments in %s", argv[1]);
    arg_slot* s = &slots[nargs];
    TVMFFIAny* a = &args[nargs];
    memset(a, 0, sizeof *a);
    if (strcmp(word, "int") == 0) {
      long long v;
      if (fscanf(spec, "%lld", &v) != 1) return die("bad spec: %s", "int");
      a->type_index = kTVMFFIInt;
      a->v_int64 = (int64_t)v;
    } else if (strcmp(word, "float") == 0) {
      double v;
      if (fscanf(spec, "%lf", &v) != 1) return die("bad spec: %s", "float");
      a->type_index = kTVMFFIFloat;
      a->v_float64 = v;
    } else if (strcmp(word, "tensor") == 0) {
      char dir[8];
      int code, bits, lanes, ndim;
      if (fscanf(spec, "%7s %4095s %d %d %d %d", dir, s->path, &code, &bits, &lanes, &ndim) != 6 ||
          ndim < 0 || ndim > MAX_DIMS)
        return die("bad spec: %s", "tensor");
      for (int i = 0; i < ndim; ++i) {
        long long d;
        if (fscanf(spec, "%lld", &d) != 1) return die("bad spec: %s", "shape");
        s->shape[i] = (int64_t)d;
      }
      s->is_tensor = 1;
      s->is_out = strcmp(dir, "out") == 0;
      s->t.device.device_type = kDLCPU;
      s->t.device.device_id = 0;
      s->t.ndim = ndim;
      s->t.dtype.code = (uint8_t)code;
      s->t.dtype.bits = (uint8_t)bits;
      s->t.dtype.lanes = (uint16_t)lanes;
      s->t.shape = s->shape;
      s->t.strides = NULL;
      s->t.byte_offset = 0;
      s->nbytes = tensor_bytes(&s->t);
      void* data = NULL;
      if (posix_memalign(&data, 64, s->nbytes ? s->nbytes : 1) != 0) return die("out of memory for %s", s->path);
      memset(data, 0, s->nbytes ? s->nbytes : 1);
      s->t.data = data;
      if (!s->is_out) {
        FILE* f = fopen(s->path, "rb");
        if (!f) return die("cannot open input %s", s->path);
        if (s->nbytes && fread(data, 1, s->nbytes, f) != s->nbytes) return die("short input %s", s->path);
        fclose(f);
      }
      a->type_index = kTVMFFIDLTensorPtr;
      a->v_ptr = &s->t;
    } else {
      return die("bad spec word %s", word);
    }
    ++nargs;
  }
  fclose(spec);

  TVMFFISafeCallType fn = NULL;
  for (const xchip_kernel_entry* e = xchip_kernels; e->name; ++e)
    if (strcmp(e->name, func) == 0) fn = e->fn;
  if (!fn) {
    fprintf(stderr, "xchip harness: no function '%s'; the object defines:", func);
    for (const xchip_kernel_entry* e = xchip_kernels; e->name; ++e) fprintf(stderr, " %s", e->name);
    fprintf(stderr, "\n");
    return 2;
  }

  TVMFFIAny result;
  memset(&result, 0, sizeof result);
  int rc = fn(NULL, args, nargs, &result);
  if (rc != 0) {
    fprintf(stderr, "xchip harness: %s returned %d: %s\n", func, rc, g_error);
    return 1;
  }
  for (int i = 0; i < nargs; ++i) {
    if (!slots[i].is_tensor || !slots[i].is_out) continue;
    FILE* f = fopen(slots[i].path, "wb");
    if (!f) return die("cannot write output %s", slots[i].path);
    if (slots[i].nbytes && fwrite(slots[i].t.data, 1, slots[i].nbytes, f) != slots[i].nbytes)
      return die("short write %s", slots[i].path);
    fclose(f);
  }
  printf("ok %s args=%d parallel_launches=%ld threads=%d\n", func, nargs, g_parallel_launches, g_num_threads);
  return 0;
}
