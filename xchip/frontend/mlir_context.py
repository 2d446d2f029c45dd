"""Parsing StableHLO (text, MLIR bytecode or a VHLO portable artifact) with jaxlib's MLIR
bindings, and legalizing CHLO to StableHLO.

Each import gets its own MLIR context: contexts keep every attribute they ever saw
(constants included) for their whole life, so a shared one would only grow. The context
holds only the dialects JAX emits and runs single-threaded; that makes one in under a
millisecond, where `jax._src.interpreters.mlir.make_ir_context()` (every dialect loaded)
takes about four.
"""

from __future__ import annotations

import io

from ..errors import ParseError

MLIR_BYTECODE_MAGIC = b"ML\xefR"
CHLO_PIPELINE = "builtin.module(func.func(chlo-legalize-to-stablehlo))"

_passes_registered = False
_registry = None


def _bindings():
    # jaxlib is imported on first use: importing xchip.ir-only code must not load jax.
    from jax._src.interpreters import mlir as jax_mlir
    from jaxlib.mlir import ir, passmanager
    from jaxlib.mlir.dialects import stablehlo
    return jax_mlir, ir, passmanager, stablehlo


def new_context():
    """A context with the dialects JAX emits (func, stablehlo, chlo, sdy, mhlo; vhlo comes
    with stablehlo)."""
    global _registry
    jax_mlir, ir, _, stablehlo = _bindings()
    try:
        from jaxlib.mlir._mlir_libs import _jax_mlir_ext
        from jaxlib.mlir.dialects import chlo, mhlo, sdy
    except ImportError:
        # Private pieces moved in this jaxlib: JAX's own helper still gives a full context.
        return jax_mlir.make_ir_context()
    if _registry is None:
        _registry = ir.DialectRegistry()
        _jax_mlir_ext.register_dialects(_registry)
    ctx = ir.Context()
    ctx.append_dialect_registry(_registry)
    ctx.enable_multithreading(False)
    stablehlo.register_dialect(ctx)
    chlo.register_dialect(ctx)
    sdy.register_dialect(ctx)
    mhlo.register_mhlo_dialect(ctx)
    return ctx


def _mlir_error_text(err: Exception) -> str:
    text = str(err).strip()
    prefix = "Unable to parse module assembly:"
    if text.startswith(prefix):
        text = text[len(prefix):].strip()
    return text


def _parse(ir, data, ctx):
    try:
        return ir.Module.parse(data, context=ctx)
    except (ir.MLIRError, ValueError) as e:
        raise ParseError(f"cannot parse StableHLO: {_mlir_error_text(e)}") from None


def _is_portable(module) -> bool:
    """A module whose functions are `vhlo.*`: a portable artifact (or its text form)."""
    return any(op.operation.name.startswith("vhlo.") for op in module.body.operations)


def _from_portable(ctx, stablehlo, ir, module, data: bytes | None):
    if data is None:
        # VHLO text: the deserializer only reads bytecode, so write the module as such.
        buf = io.BytesIO()
        module.operation.write_bytecode(buf)
        data = buf.getvalue()
    try:
        return stablehlo.deserialize_portable_artifact(ctx, data)
    except (ir.MLIRError, ValueError) as e:
        raise ParseError(
            f"cannot read the StableHLO portable artifact ({e}); it may come from a newer "
            f"StableHLO than this jaxlib reads ({stablehlo.get_current_version()})") from None


def parse_module(source, ctx):
    """Parse `source` (str: text; bytes: text, bytecode or portable artifact) in `ctx`
    and return an `ir.Module` of func/stablehlo/chlo ops."""
    _, ir, _, stablehlo = _bindings()
    data = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data.startswith(MLIR_BYTECODE_MAGIC):
            try:
                source, data = data.decode("utf-8"), None
            except UnicodeDecodeError:
                raise ParseError("input is neither MLIR bytecode nor UTF-8 StableHLO text") from None
    elif not isinstance(source, str):
        raise TypeError(f"expected StableHLO as str or bytes, got {type(source).__name__}")
    module = _parse(ir, data if data is not None else source, ctx)
    if _is_portable(module):
        module = _from_portable(ctx, stablehlo, ir, module, data)
    return module


def legalize_chlo(module) -> None:
    """Rewrite `chlo.*` ops into StableHLO in place, with jaxlib's own pass."""
    global _passes_registered
    _, ir, passmanager, stablehlo = _bindings()
    if not _passes_registered:
        stablehlo.register_stablehlo_passes()
        _passes_registered = True
    pm = passmanager.PassManager.parse(CHLO_PIPELINE, context=module.context)
    try:
        pm.run(module.operation)
    except (ir.MLIRError, ValueError) as e:
        raise ParseError(f"CHLO legalization failed: {_mlir_error_text(e)}") from None
