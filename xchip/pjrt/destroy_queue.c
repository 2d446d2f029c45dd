/* The PJRT `*_Destroy` entries and the C-side deleters of the xchip plugin.
 *
 * XLA calls the Destroy entries from C++ destructors, also while a Python exception is
 * unwinding through C++ frames; a ctypes callback at that moment clears the pending
 * exception ("SystemError: error return without exception set"). So these entries never
 * run Python: they push the handle onto a lock-free stack, and the plugin drains it from
 * Python at points where running Python is safe (its other entries).
 *
 * Every Destroy args struct is {size_t struct_size; void* extension_start; T* handle}, and
 * handles are unique across kinds, so one entry serves them all. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct node {
  struct node* next;
  uintptr_t handle;
} node;

typedef struct {
  size_t struct_size;
  void* extension_start;
  void* handle;
} destroy_args;

static _Atomic(node*) pending = NULL;
static atomic_size_t lost = 0;

/* Returns a PJRT_Error* (always NULL); PJRT_Error_Destroy's void return ignores it. */
void* xchip_pjrt_deferred_destroy(destroy_args* args) {
  if (args == NULL || args->handle == NULL) return NULL;
  node* n = malloc(sizeof *n);
  if (n == NULL) {            /* leaking one object beats aborting inside a destructor */
    atomic_fetch_add(&lost, 1);
    return NULL;
  }
  n->handle = (uintptr_t)args->handle;
  n->next = atomic_load(&pending);
  while (!atomic_compare_exchange_weak(&pending, &n->next, n)) {
  }
  return NULL;
}

/* Moves up to `capacity` queued handles into `out`; returns how many. Taking the whole
 * list at once (an exchange, not a pop) leaves no ABA window. */
size_t xchip_pjrt_drain(uint64_t* out, size_t capacity) {
  node* list = atomic_exchange(&pending, NULL);
  size_t count = 0;
  while (list != NULL && count < capacity) {
    node* next = list->next;
    out[count++] = list->handle;
    free(list);
    list = next;
  }
  /* what did not fit goes back for the next drain */
  while (list != NULL) {
    node* next = list->next;
    list->next = atomic_load(&pending);
    while (!atomic_compare_exchange_weak(&pending, &list->next, list)) {
    }
    list = next;
  }
  return count;
}

size_t xchip_pjrt_lost(void) { return atomic_load(&lost); }

/* For the deleters PJRT hands back with borrowed data (device attributes, the serialized
 * device assignment): the data belongs to the plugin and outlives the caller's use. */
void xchip_pjrt_noop_deleter(void* data) { (void)data; }
