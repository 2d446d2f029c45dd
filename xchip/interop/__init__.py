"""xchip programs inside JAX transformations (`jax.jit`, `jax.grad`, `jax.vmap`).

`staging` turns an xchip call with tracers into an op of the outer JAX program; `ffi`
holds the native route (a pure C XLA FFI handler, `trampoline.c`, calling back into the
compiled program) and the registry of compiled programs. See docs/jax.md.
"""
