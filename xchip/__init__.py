"""xchip: a cross-vendor compiler backend for JAX."""

__version__ = "0.1.0"
