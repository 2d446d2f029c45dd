"""xchip: a cross-vendor compiler backend for JAX.

    import xchip
    f = xchip.jit(model, target="cpu")      # like jax.jit
    f(params, x)                            # or f.lower(params, x).compile()
"""

from . import errors

__version__ = "0.1.0"

_API = ("Compiled", "Lowered", "XchipFunction", "import_stablehlo", "jit", "run")
__all__ = [*_API, "errors", "__version__"]


def __getattr__(name):
    # The API pulls in jax; importing it lazily keeps `import xchip.ir` (used by worker
    # processes and tools that only read IR) free of that start-up cost.
    if name in _API or name == "api":
        import importlib
        api = importlib.import_module(".api", __name__)
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'xchip' has no attribute '{name}'")
