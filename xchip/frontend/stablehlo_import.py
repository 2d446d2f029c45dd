"""StableHLO to xchip IR.

    graph = import_stablehlo(text_or_bytes)              # text, bytecode, portable artifact
    graph = import_exported(jax.export.export(jax.jit(f), platforms=["xchip"])(x))

The module is parsed with jaxlib's MLIR bindings, CHLO is legalized with jaxlib's own
pass, and the public `@main` (or the only public function) is translated op by op:
`func.call` and `stablehlo.composite` are inlined, legacy `dot`/`broadcast` become
`dot_general`/`broadcast_in_dim`, Shardy annotations are dropped, and every op carries
its source location. Anything xchip cannot express raises `UnsupportedOpError` naming the
op and its location. The result passes `xchip.ir.verify`.
"""

from __future__ import annotations

import re
from typing import Iterable

from ..errors import ParseError, UnsupportedOpError, VerificationError
from ..ir import ops as ir_ops
from ..ir.graph import Graph, Location, Op, Region, Value
from ..ir.types import TensorType
from ..ir.verifier import verify, verify_op
from . import constants, mlir_attrs
from .locations import location_from_text
from .mlir_context import legalize_chlo, new_context, parse_module
from .mlir_types import TypeNotSupported, tensor_type_from_text
from .stablehlo_ops import HANDLERS, unsupported_detail

TERMINATORS = ("func.return", "stablehlo.return", "sdy.return")


def import_stablehlo(source: str | bytes, *, allow_custom_calls: Iterable[str] = ()) -> Graph:
    """xchip IR for the StableHLO module `source`: text (str or UTF-8 bytes), MLIR bytecode,
    or a StableHLO portable artifact. `stablehlo.custom_call`s whose target is listed in
    `allow_custom_calls` become `custom_call` ops; any other raises UnsupportedOpError."""
    ctx = new_context()
    with ctx:
        module = parse_module(source, ctx)
        legalize_chlo(module)
        graph = _Importer(module, allow_custom_calls).run()
    return verify(graph)


def import_exported(exported, *, allow_custom_calls: Iterable[str] = ()) -> Graph:
    """xchip IR for a `jax.export.Exported` (or its serialized bytes). The graph takes the
    arguments the module kept (`exported.module_kept_var_idx`) in that order."""
    if isinstance(exported, (bytes, bytearray, memoryview)):
        from jax import export as jax_export
        exported = jax_export.deserialize(bytearray(exported))
    try:
        artifact = exported.mlir_module_serialized
    except AttributeError:
        raise TypeError(f"expected a jax.export.Exported or its serialized bytes, "
                        f"got {type(exported).__name__}") from None
    return import_stablehlo(artifact, allow_custom_calls=allow_custom_calls)


class _Importer:
    def __init__(self, module, allow_custom_calls: Iterable[str]):
        self.module = module
        self.allow_custom_calls = tuple(sorted(set(allow_custom_calls)))
        self.funcs: dict[str, object] = {}
        self.public: list[str] = []
        for item in module.body.operations:
            op = item.operation
            if op.name != "func.func":
                continue
            name = mlir_attrs.string(op.attributes["sym_name"])
            self.funcs[name] = op
            visibility = mlir_attrs.get(op, "sym_visibility")
            if visibility is None or mlir_attrs.string(visibility) == "public":
                self.public.append(name)
        self.region: Region | None = None      # where ops are emitted
        self.env: dict = {}                    # MLIR value -> xchip Value, per inlined call
        self.inlining: list[str] = []          # functions being inlined, outermost first
        self.call_site: Location | None = None  # where the function being inlined was called
        self.source_op = ""                    # the MLIR op being converted, for errors
        self._resources: dict[str, str] | None = None

    # -- entry ---------------------------------------------------------------------------------

    def entry_name(self) -> str:
        if "main" in self.funcs:
            return "main"
        if len(self.public) == 1:
            return self.public[0]
        found = ", ".join(f"@{n}" for n in self.funcs) or "none"
        raise ParseError(f"the module has no @main and not exactly one public function (found: {found})")

    def run(self) -> Graph:
        name = self.entry_name()
        func = self.funcs[name]
        loc = self.location(func)
        body = self._single_block(func.regions[0], func, loc)
        region = Region(self.types_of(list(body.arguments), func, loc))
        self.env = dict(zip(body.arguments, region.args))
        self.region = region
        self.inlining.append(name)
        outs, ret = self.convert_ops(body)
        region.append(Op("return", outs, [], loc=self.location(ret)))
        return Graph(name, region)

    # -- helpers for the op handlers --------------------------------------------------------

    def location(self, op) -> Location:
        loc = location_from_text(str(op.location))
        site = self.call_site
        if site is None:
            return loc
        # An inlined op is named after the call (`jit(f)/jit(g)` + `/mul`), like JAX's own
        # name stack. Ops of primitives JAX outlines (fft, qr, ...) carry no file position:
        # the user's line is the call's.
        name = "/".join(n for n in (site.name, loc.name) if n) or None
        if loc.file is None:
            return Location(site.file, site.line, site.col, name)
        return Location(loc.file, loc.line, loc.col, name)

    def fail(self, op, loc: Location | None, detail: str | None = None, name: str | None = None):
        name = name or op.name
        raise UnsupportedOpError(name, loc, None, detail or unsupported_detail(name))

    def types_of(self, values, op, loc) -> list[TensorType]:
        out = []
        for v in values:
            try:
                out.append(tensor_type_from_text(str(v.type)))
            except TypeNotSupported as e:
                self.fail(op, loc, str(e))
        return out

    def result_types(self, op) -> list[TensorType]:
        return self.types_of(list(op.results), op, self.location(op))

    def block_result_types(self, block, op, loc) -> list[TensorType]:
        term = list(block.operations)[-1].operation
        return self.types_of(list(term.operands), op, loc)

    def emit(self, name: str, operands, result_types, attrs: dict | None = None, regions=(),
             loc: Location | None = None) -> list[Value]:
        op = Op(name, operands, result_types, ir_ops.fill_defaults(name, attrs or {}), regions, loc)
        try:
            verify_op(op)
        except VerificationError as e:
            # StableHLO allows it, xchip's rules for the op do not: the op is unsupported.
            raise UnsupportedOpError(self.source_op or name, loc, None, f"xchip IR rejects it: {e}") from None
        self.region.append(op)
        return op.results

    def convert_region(self, mregion, owner) -> Region:
        """A nested region (reduce body, while cond, ...). It may use values from outside."""
        loc = self.location(owner)
        block = self._single_block(mregion, owner, loc)
        region = Region(self.types_of(list(block.arguments), owner, loc))
        self.env.update(zip(block.arguments, region.args))
        outer, self.region = self.region, region
        try:
            outs, ret = self.convert_ops(block)
            region.append(Op("return", outs, [], loc=self.location(ret)))
        finally:
            self.region = outer
        return region

    def inline_block(self, block, args: list[Value]) -> list[Value]:
        """The ops of `block` emitted into the current region with its arguments bound to
        `args`; returns the values its terminator returns."""
        self.env.update(zip(block.arguments, args))
        outs, _ = self.convert_ops(block)
        return outs

    def inline_function(self, name: str, args: list[Value], op, loc) -> list[Value]:
        func = self.funcs.get(name)
        if func is None:
            raise ParseError(f"call to unknown function @{name} at {loc}")
        if name in self.inlining:
            self.fail(op, loc, f"recursive call to @{name} cannot be inlined")
        block = self._single_block(func.regions[0], func, loc)
        # A callee cannot see the caller's values, and its own values must map afresh each
        # time it is inlined: give it its own environment.
        outer_env, self.env = self.env, {}
        outer_site, self.call_site = self.call_site, loc
        self.inlining.append(name)
        try:
            return self.inline_block(block, args)
        finally:
            self.inlining.pop()
            self.env = outer_env
            self.call_site = outer_site

    def read_constant(self, op, rtype: TensorType, loc):
        # The printed op, not the attribute object: see constants.py for why.
        asm = op.get_asm(print_generic_op_form=True, use_local_scope=True, assume_verified=True)
        try:
            kind, body = constants.dense_body(asm)
            if kind == "dense_resource":
                return constants.from_hex_blob(self._resource_blob(body.strip()), rtype)
            return constants.from_dense_body(body, rtype)
        except (constants.ConstantFormatError, ValueError) as e:
            self.fail(op, loc, f"cannot read the constant: {e}")

    # -- the walk --------------------------------------------------------------------------------

    def convert_ops(self, block):
        """Emit every op of `block`; return (values its terminator returns, the terminator)."""
        for item in block.operations:
            op = item.operation
            name = op.name
            if name in TERMINATORS:
                return [self._value(v, op) for v in op.operands], op
            handler = HANDLERS.get(name)
            loc = self.location(op)
            if handler is None:
                self.fail(op, loc)
            args = [self._value(v, op) for v in op.operands]
            outer, self.source_op = self.source_op, name
            try:
                results = handler(self, op, args, loc)
            finally:
                self.source_op = outer
            if len(results) != len(op.results):
                raise AssertionError(f"handler for {name} gave {len(results)} results, not {len(op.results)}")
            self.env.update(zip(op.results, results))
        raise ParseError(f"block without terminator in {block.owner.name if block.owner else 'a function'}")

    def _value(self, mvalue, op) -> Value:
        try:
            return self.env[mvalue]
        except KeyError:
            raise ParseError(f"operand of {op.name} at {self.location(op)} is not defined before its use") from None

    def _single_block(self, mregion, owner, loc):
        blocks = list(mregion.blocks)
        if len(blocks) != 1:
            self.fail(owner, loc, f"regions with {len(blocks)} blocks (unstructured control flow) are not supported")
        return blocks[0]

    def _resource_blob(self, key: str) -> str:
        """The hex data of `dense_resource<key>`, from the module's printed resource section
        (`0x` + a 4-byte alignment + raw data)."""
        if self._resources is None:
            self._resources = _parse_resources(self.module.operation.get_asm(assume_verified=True))
        if key not in self._resources:
            raise constants.ConstantFormatError(f"no data for dense_resource<{key}>")
        blob = self._resources[key]
        return blob[2 + 8:] if blob[:2] in ("0x", "0X") else blob[8:]


def _parse_resources(asm: str) -> dict[str, str]:
    start = asm.find("{-#")
    if start < 0:
        return {}
    return dict(re.findall(r'([\w.$-]+|"[^"]*")\s*:\s*"(0x[0-9A-Fa-f]*)"', asm[start:]))
