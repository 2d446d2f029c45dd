"""Tests of the StableHLO importer (`xchip.frontend.stablehlo_import`): the conformance set,
constants bit for bit, locations, input formats, unsupported ops, and JAX programs with
control flow."""

from __future__ import annotations

import inspect
import io
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchip.errors import ParseError, UnsupportedOpError
from xchip.frontend.locations import location_from_text
from xchip.frontend.stablehlo_import import import_exported, import_stablehlo
from xchip.ir import Location, dtypes, parse_graph, print_graph, verify

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("check.expect_eq", "check.expect_close", "check.expect_almost_eq")

# Conformance files that xchip deliberately does not import, with the op that stops each.
# Empty: every file of the set imports. A file that starts failing, or one listed here that
# starts importing, fails `test_conformance_files_import_or_are_unsupported`.
KNOWN_UNSUPPORTED: dict[str, str] = {}


def conformance_dir() -> Path:
    """`$XCHIP_CONFORMANCE_DIR`, else the repository's copy of the set."""
    return Path(os.environ.get("XCHIP_CONFORMANCE_DIR") or REPO / "tests" / "conformance" / "stablehlo")


def lower_text(fn, *args) -> str:
    return jax.jit(fn).trace(*args).lower(lowering_platforms=("xchip",)).as_text(debug_info=True)


def import_fn(fn, *args, **kw):
    return import_stablehlo(lower_text(fn, *args), **kw)


def op_names(graph) -> list[str]:
    return [op.name for op in graph.walk()]


def round_trips(graph) -> bool:
    text = print_graph(graph)
    again = parse_graph(text)
    verify(again)
    return print_graph(again) == text


# --- the conformance set -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def conformance():
    """Every conformance file imported once: name -> Graph | UnsupportedOpError | other error."""
    folder = conformance_dir()
    files = sorted(folder.glob("*.mlir"))
    assert files, f"no conformance files in {folder}"
    results = {}
    for path in files:
        try:
            results[path.name] = import_stablehlo(path.read_text(), allow_custom_calls=CHECKS)
        except Exception as e:  # recorded; the tests below say which files and why
            results[path.name] = e
    return results


def test_conformance_files_import_or_are_unsupported(conformance):
    others = {n: f"{type(r).__name__}: {r}" for n, r in conformance.items()
              if isinstance(r, Exception) and not isinstance(r, UnsupportedOpError)}
    assert not others, f"{len(others)} files failed with errors other than UnsupportedOpError: " \
                       f"{dict(list(others.items())[:5])}"
    unsupported = {n: r.op for n, r in conformance.items() if isinstance(r, UnsupportedOpError)}
    imported = sum(1 for r in conformance.values() if not isinstance(r, Exception))
    print(f"\nconformance: {imported} of {len(conformance)} files import; unsupported: {unsupported}")
    assert unsupported == {n: op for n, op in KNOWN_UNSUPPORTED.items() if n in conformance}


def test_conformance_graphs_round_trip_through_text(conformance):
    bad = [n for n, g in conformance.items() if not isinstance(g, Exception) and not round_trips(g)]
    assert not bad, f"print/parse does not round-trip for {bad[:5]}"


def test_conformance_checks_become_custom_calls(conformance):
    graph = conformance["abs_float16_20_20.mlir"] if "abs_float16_20_20.mlir" in conformance else \
        next(g for g in conformance.values() if not isinstance(g, Exception))
    calls = [op for op in graph.walk() if op.name == "custom_call"]
    assert calls and all(op.attrs["call_target_name"] in CHECKS and op.attrs["has_side_effect"]
                         for op in calls)
    assert all(op.loc and op.loc.file == "<stablehlo>" and op.loc.line for op in graph.walk())


def test_conformance_chlo_files_import(conformance):
    # jaxlib's chlo-legalize-to-stablehlo pass rewrites every CHLO op the set uses
    # (lgamma, top_k, erf_inv, bessel_i1e, ...) into StableHLO ops xchip takes.
    chlo = [n for n in conformance if n.endswith("_chlo.mlir")]
    failed = [n for n in chlo if isinstance(conformance[n], Exception)]
    assert chlo and not failed, failed[:5]


def test_check_calls_need_allow_custom_calls():
    path = sorted(conformance_dir().glob("abs_*.mlir"))[0]
    with pytest.raises(UnsupportedOpError) as e:
        import_stablehlo(path.read_text())
    assert e.value.op == "stablehlo.custom_call" and "check.expect" in str(e.value)
    assert e.value.loc.file == "<stablehlo>" and e.value.loc.line > 0


# --- constants, bit for bit --------------------------------------------------------------------

ALL_DTYPES = list(dtypes.ALL)


def _constant_module(value: np.ndarray) -> str:
    dt = dtypes.from_numpy(value.dtype)
    ttype = "tensor<" + "".join(f"{d}x" for d in value.shape) + dt.mlir + ">"
    data = value.astype(np.uint8) if value.dtype == np.bool_ else value
    blob = np.ascontiguousarray(data).tobytes().hex().upper()
    return (f"func.func @main() -> {ttype} {{\n"
            f"  %0 = stablehlo.constant dense<\"0x{blob}\"> : {ttype}\n"
            f"  return %0 : {ttype}\n}}\n")


def _imported_constant(value: np.ndarray) -> np.ndarray:
    graph = import_stablehlo(_constant_module(value))
    (op,) = [op for op in graph.body.ops if op.name == "constant"]
    return op.attrs["value"]


def _assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), (got, want)


def _random_array(dt, size: int, raw: bytes) -> np.ndarray:
    if dt.kind == "bool":
        return (np.frombuffer(raw[:size], np.uint8) & 1).astype(bool)
    return np.frombuffer(raw[:size * dt.itemsize], dt.numpy).copy()


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.sampled_from([1, 2, 7, 100, 101, 250]), raw=st.binary(min_size=4000, max_size=4000))
def test_random_bit_patterns_read_exactly(dt, size, raw):
    # MLIR prints up to 100 elements as literals (decimals, hex for nan/inf) and more as a
    # hex blob: both readers see every bit pattern, NaN payloads included.
    value = _random_array(dt, size, raw).reshape((size,) if size % 2 else (2, size // 2))
    _assert_bits_equal(_imported_constant(value), value)


def _special_values(dt) -> np.ndarray:
    if dt.kind == "bool":
        return np.array([True, False, True])
    if dt.is_integer:
        info = np.iinfo(dt.numpy)
        return np.array([info.min, info.max, 0, 1, info.max // 3], dt.numpy)
    if dt.is_complex:
        part = np.float32 if dt.name == "c64" else np.float64
        re = _special_values(dtypes.from_numpy(part))
        out = np.empty(len(re), dt.numpy)
        out.real, out.imag = re, re[::-1]
        return out
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
    top = 1 << (8 * dt.itemsize - 1)
    bits = np.array([0, top, 1, top | 1, top - 1, (top - 1) ^ 1], uint)  # ±0, ±min subnormal, nan/max
    finfo = ml_dtypes.finfo(dt.numpy)
    decimals = np.array([0.1, 1 / 3, -2.5, float(finfo.max), float(finfo.tiny), float(finfo.eps)])
    return np.concatenate([bits.view(dt.numpy), decimals.astype(dt.numpy)])


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
def test_special_values_and_splats_read_exactly(dt):
    values = _special_values(dt)
    _assert_bits_equal(_imported_constant(values), values)
    for v in values:                         # splat: one element fills the tensor
        splat = np.full((3, 2), v, dt.numpy)
        _assert_bits_equal(_imported_constant(splat), splat)
    scalar = values[:1].reshape(())
    _assert_bits_equal(_imported_constant(scalar), scalar)
    empty = np.zeros((0, 3), dt.numpy)
    _assert_bits_equal(_imported_constant(empty), empty)


@pytest.mark.parametrize("dt, literals, bits", [
    # 1 + 2^-8 lies half-way between two bfloat16 values: a decimal a hair above it rounds
    # up, which a float64 -> float32 -> bfloat16 chain gets wrong.
    (dtypes.BF16, "[1.00390625000000001, 1.00390625, -1.00390625000000001]", [0x3F81, 0x3F80, 0xBF81]),
    # 1 + 2^-24: half-way between two float32 values; float64 alone would round it to the tie.
    (dtypes.F32, "[1.0000000596046447753906250001, 1.00000005960464477539062499]", [0x3F800001, 0x3F800000]),
    (dtypes.F16, "[6.103515625e-05, 0x7E01, -0.000000e+00]", [0x0400, 0x7E01, 0x8000]),
])
def test_decimal_literals_round_once_to_the_element_type(dt, literals, bits):
    from xchip.frontend.constants import from_dense_body
    from xchip.ir import TensorType
    value = from_dense_body(literals, TensorType((len(bits),), dt))
    assert [int(b) for b in value.view({2: np.uint16, 4: np.uint32}[dt.itemsize])] == bits


def _closure_constants():
    rng = np.random.default_rng(0)
    out = []
    for dt in ALL_DTYPES:
        for n in (5, 300):
            if dt.kind == "bool":
                v = rng.integers(0, 2, n).astype(bool)
            elif dt.is_integer:
                info = np.iinfo(dt.numpy)
                v = rng.integers(info.min, info.max, n, dtype=dt.numpy, endpoint=True)
            elif dt.is_complex:
                v = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt.numpy)
                v[0] = complex(np.nan, np.inf)
            else:
                v = (rng.standard_normal(n) * 3).astype(dt.numpy)
                v[:3] = np.array([np.nan, -np.inf, -0.0]).astype(dt.numpy) if dt.name != "f8e4m3fn" \
                    else np.array([np.nan, 448, -0.0]).astype(dt.numpy)
            out.append(v.reshape(-1, 5) if n == 300 else v)
    return out


def test_constants_closed_over_by_jax_functions_read_exactly():
    consts = _closure_constants()
    with jax.enable_x64(True):
        text = lower_text(lambda: [jnp.asarray(c) for c in consts])
    graph = import_stablehlo(text)
    assert len(graph.outputs) == len(consts)
    for out, want in zip(graph.outputs, consts):
        assert out.producer.name == "constant"
        _assert_bits_equal(out.producer.attrs["value"], want)


# --- locations ---------------------------------------------------------------------------------

def _line_of(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def _scaled(y):
    return y * 3.0  # LOC-MUL


def _located(x):
    y = jnp.sin(x)  # LOC-SIN
    z = jax.jit(_scaled)(y)  # LOC-CALL
    return z


def test_locations_point_at_the_user_line():
    graph = import_fn(_located, jnp.ones((4,), jnp.float32))
    sine = next(op for op in graph.walk() if op.name == "sine")
    assert Path(sine.loc.file).name == Path(__file__).name
    assert sine.loc.line == _line_of(_located, "LOC-SIN")
    assert sine.loc.name == "jit(_located)/sin"
    # The inlined call's ops keep the innermost frame: the line inside `_scaled`.
    mul = next(op for op in graph.walk() if op.name == "multiply")
    assert mul.loc.line == _line_of(_scaled, "LOC-MUL")
    assert mul.loc.name == "jit(_located)/jit(_scaled)/mul"
    assert all(op.loc for op in graph.walk())


def test_outlined_primitives_take_the_call_site_location():
    # JAX lowers some primitives (fft, qr) into private functions whose ops carry only a
    # short name; the importer attributes them to the line of the call.
    def f(x):
        return jnp.linalg.qr(x)  # LOC-QR
    with pytest.raises(UnsupportedOpError) as e:
        import_fn(f, jnp.ones((3, 3)))
    assert e.value.op == "stablehlo.custom_call"
    assert e.value.loc.line == _line_of(f, "LOC-QR") and e.value.loc.name.endswith("/geqrf")


@pytest.mark.parametrize("text, expected", [
    ('loc("jit(f)/dot_general"(callsite("f"("m.py":5:17 to :30) at "<module>"("m.py":9:1))))',
     Location("m.py", 5, 17, "jit(f)/dot_general")),
    ('loc(callsite(callsite("g"("a.py":3:11) at "f"("a.py":6:2)) at "<module>"("b.py":1:1)))',
     Location("a.py", 3, 11, "g")),
    ('loc("x")', Location(None, None, None, "x")),
    ('loc(unknown)', Location()),
    ('loc("-":12:5)', Location("<stablehlo>", 12, 5, None)),
    ('loc("f.py":4:2 to 6:1)', Location("f.py", 4, 2, None)),
    ('loc(fused<"meta">["n", "f.py":7:3])', Location("f.py", 7, 3, "n")),
    ('loc("a\\22b\\\\c"("dir\\5Cx.py":1:2))', Location("dir\\x.py", 1, 2, 'a"b\\c')),
    ('loc(#foo.bar<1>)', Location()),
])
def test_location_text_parser(text, expected):
    assert location_from_text(text) == expected


# --- input formats -------------------------------------------------------------------------------

def _formats_fn(x, w):
    y = jnp.tanh(x @ w)
    return jnp.argmax(y, axis=1), jnp.cumsum(y, axis=0), jnp.sort(y, axis=1)


def test_text_bytecode_portable_artifact_and_export_give_the_same_graph():
    from jaxlib.mlir.dialects import stablehlo
    args = (jnp.ones((4, 8)), jnp.ones((8, 3)))
    lowered = jax.jit(_formats_fn).trace(*args).lower(lowering_platforms=("xchip",))
    module = lowered.compiler_ir("stablehlo")
    buf = io.BytesIO()
    module.operation.write_bytecode(buf)
    with module.context:
        artifact = stablehlo.serialize_portable_artifact(module, stablehlo.get_current_version())
    text = lowered.as_text(debug_info=True)
    expected = print_graph(import_stablehlo(text))
    assert print_graph(import_stablehlo(text.encode())) == expected
    assert print_graph(import_stablehlo(buf.getvalue())) == expected
    assert print_graph(import_stablehlo(artifact)) == expected
    assert print_graph(import_stablehlo(text)) == expected        # deterministic
    # jax.export lowers anew (op order and caller line may differ), so compare its forms
    # with each other: the Exported, its portable artifact, and its text.
    exported = jax.export.export(jax.jit(_formats_fn), platforms=["xchip"])(*args)
    from_export = print_graph(import_exported(exported))
    assert print_graph(import_stablehlo(exported.mlir_module_serialized)) == from_export
    assert print_graph(import_stablehlo(exported.mlir_module())) == from_export


def test_serialized_export_bytes():
    exported = jax.export.export(jax.jit(_formats_fn), platforms=["xchip"])(jnp.ones((4, 8)), jnp.ones((8, 3)))
    assert print_graph(import_exported(exported.serialize())) == print_graph(import_exported(exported))


def test_vhlo_text_is_upgraded():
    from jaxlib.mlir import ir
    exported = jax.export.export(jax.jit(jnp.sin), platforms=["xchip"])(jnp.ones((4,)))
    from xchip.frontend.mlir_context import new_context
    with new_context() as ctx:
        vhlo_text = str(ir.Module.parse(exported.mlir_module_serialized, context=ctx))
    assert "vhlo.func_v1" in vhlo_text
    assert op_names(import_stablehlo(vhlo_text)) == ["sine", "return"]


def test_malformed_input_raises_parse_error():
    with pytest.raises(ParseError):
        import_stablehlo("func.func @main( {")
    with pytest.raises(ParseError):
        import_stablehlo(b"ML\xefR\x00garbage")
    with pytest.raises(ParseError, match="no @main"):
        import_stablehlo("func.func private @a() -> () { return }\nfunc.func private @b() -> () { return }")


# --- unsupported ops -------------------------------------------------------------------------------

def _unsupported(fn, *args, **kw) -> UnsupportedOpError:
    with pytest.raises(UnsupportedOpError) as e:
        import_fn(fn, *args, **kw)
    return e.value


def _fft(x):
    return jnp.fft.fft(x)  # LOC-FFT


def test_fft_is_unsupported_with_its_location():
    e = _unsupported(_fft, jnp.ones((4,)))
    assert e.op == "stablehlo.fft" and "FFT" in str(e)
    assert Path(e.loc.file).name == Path(__file__).name and e.loc.line == _line_of(_fft, "LOC-FFT")


@pytest.mark.parametrize("fn, op", [
    (lambda x: jax.lax.linalg.cholesky(x @ x.T + jnp.eye(3)), "stablehlo.cholesky"),
    (lambda x: jax.lax.linalg.triangular_solve(x + 3 * jnp.eye(3), x, left_side=True), "stablehlo.triangular_solve"),
    (lambda x: jax.random.bits(jax.random.key(0, impl="rbg"), (3,)) + x[0, 0].astype(jnp.uint32),
     "stablehlo.rng_bit_generator"),
    (lambda x: x.astype(jnp.int4), "stablehlo.convert"),
    (lambda x: x.astype(jnp.float8_e4m3fnuz), "stablehlo.convert"),
])
def test_unsupported_ops_name_op_and_location(fn, op):
    e = _unsupported(fn, jnp.ones((3, 3)))
    assert e.op == op and e.loc.file and e.loc.line and str(e.loc) in str(e)


def test_default_jax_random_imports():
    # threefry (the default) lowers to plain integer ops
    graph = import_fn(lambda k: jax.random.uniform(k, (8,)), jax.random.key_data(jax.random.key(0)))
    assert "shift_right_logical" in op_names(graph)


@pytest.mark.parametrize("body, op", [
    ('%0 = "stablehlo.all_reduce"(%a) <{replica_groups = dense<0> : tensor<1x1xi64>}> ({\n'
     '^bb0(%x: tensor<f32>, %y: tensor<f32>):\n  %s = stablehlo.add %x, %y : tensor<f32>\n'
     '  stablehlo.return %s : tensor<f32>\n}) : (tensor<4xf32>) -> tensor<4xf32>', "stablehlo.all_reduce"),
    ('%0 = stablehlo.custom_call @lapack_spotrf(%a) : (tensor<4xf32>) -> tensor<4xf32>', "stablehlo.custom_call"),
    ('%t = stablehlo.create_token : !stablehlo.token\n  %0 = stablehlo.abs %a : tensor<4xf32>',
     "stablehlo.create_token"),
])
def test_unsupported_text_ops(body, op):
    text = f"func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {{\n  {body}\n  return %0 : tensor<4xf32>\n}}"
    with pytest.raises(UnsupportedOpError) as e:
        import_stablehlo(text)
    assert e.value.op == op and e.value.loc.file == "<stablehlo>" and e.value.loc.line == 2


def test_ops_that_xchip_rules_reject_are_unsupported():
    # StableHLO takes the cube root of complex numbers; xchip's `cbrt` is for floats only.
    text = ("func.func @main(%a: tensor<4xcomplex<f32>>) -> tensor<4xcomplex<f32>> {\n"
            "  %0 = stablehlo.cbrt %a : tensor<4xcomplex<f32>>\n"
            "  return %0 : tensor<4xcomplex<f32>>\n}")
    with pytest.raises(UnsupportedOpError, match="xchip IR rejects") as e:
        import_stablehlo(text)
    assert e.value.op == "stablehlo.cbrt" and e.value.loc.line == 2


def test_dynamic_shapes_are_unsupported():
    text = ("func.func @main(%a: tensor<?xf32>) -> tensor<?xf32> {\n"
            "  return %a : tensor<?xf32>\n}")
    with pytest.raises(UnsupportedOpError, match="static shapes"):
        import_stablehlo(text)


def test_allowed_custom_call_becomes_custom_call():
    text = ("func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {\n"
            "  %0 = stablehlo.custom_call @my_kernel(%a) {api_version = 4 : i32} : (tensor<4xf32>) -> tensor<4xf32>\n"
            "  return %0 : tensor<4xf32>\n}")
    graph = import_stablehlo(text, allow_custom_calls=["my_kernel"])
    (call,) = [op for op in graph.walk() if op.name == "custom_call"]
    assert call.attrs == {"call_target_name": "my_kernel", "has_side_effect": False}


# --- JAX programs -------------------------------------------------------------------------------

X = jnp.linspace(-1.0, 2.0, 24, dtype=jnp.float32).reshape(4, 6)


@pytest.mark.parametrize("name, fn, expect", [
    ("argmax", lambda x: jnp.argmax(x, axis=1), "reduce"),
    ("top_k", lambda x: jax.lax.top_k(x, 3), "sort"),
    ("variadic_reduce", lambda x: jax.lax.reduce((x, x.astype(jnp.int32)), (0.0, 1),
                                                 lambda a, b: (a[0] + b[0], a[1] * b[1]), (1,)), "reduce"),
    ("while", lambda x: jax.lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 2.0), (0, x))[1],
     "while"),
    ("cond", lambda x: jax.lax.cond(x[0, 0] > 0, lambda: x, lambda: -x), "case"),
    ("switch", lambda x: jax.lax.switch(jnp.int32(1), [lambda: x, lambda: -x, lambda: 2 * x]), "case"),
    ("scan", lambda x: jax.lax.scan(lambda c, r: (c + r, c * r), x[0], x)[1], "dynamic_update_slice"),
    ("conv", lambda x: jax.lax.conv(x[None, None], jnp.ones((2, 1, 2, 2)), (1, 1), "SAME"), "convolution"),
    ("maxpool_grad", lambda x: jax.grad(lambda y: jax.lax.reduce_window(
        y, -jnp.inf, jax.lax.max, (2, 2), (1, 1), "VALID").sum())(x), "select_and_scatter"),
    ("gather", lambda x: x[jnp.array([0, 2])], "gather"),
    ("scatter", lambda x: x.at[jnp.array([0, 2])].add(1.0), "scatter"),
    ("dynamic_slice", lambda x: jax.lax.dynamic_slice(x, (1, 1), (2, 2)), "dynamic_slice"),
    ("barrier", lambda x: jax.lax.optimization_barrier((x, x + 1)), "optimization_barrier"),
    ("composite", lambda x: jax.lax.composite(lambda y: y * 2.0, name="my.double")(x), "multiply"),
    ("complex", lambda x: jnp.abs(jnp.exp(jax.lax.complex(x, x))), "complex"),
    ("bitcast", lambda x: jax.lax.bitcast_convert_type(x, jnp.int32), "bitcast_convert"),
    ("reduce_precision", lambda x: jax.lax.reduce_precision(x, 5, 10), "reduce_precision"),
    ("erf_inv_chlo", lambda x: jax.lax.erf_inv(x / 3), "log_plus_one"),
    ("sharding_constraint", lambda x: jax.lax.with_sharding_constraint(
        x, jax.sharding.SingleDeviceSharding(jax.devices()[0])) + 1, "add"),
])
def test_jax_programs_import(name, fn, expect):
    graph = import_fn(fn, X)
    assert expect in op_names(graph)
    assert not any(n.startswith(("chlo.", "sdy.", "stablehlo.")) for n in op_names(graph))
    assert round_trips(graph)


def test_while_if_case_regions():
    def f(x):
        y = jax.lax.while_loop(lambda c: c.sum() < 100.0, lambda c: c * 2.0, x)
        return jax.lax.switch(jnp.argmax(y[0]), [lambda: y, lambda: -y, lambda: y + 1])
    graph = import_fn(f, X)
    loop = next(op for op in graph.walk() if op.name == "while")
    assert len(loop.regions) == 2 and loop.regions[0].outputs[0].type.dtype == dtypes.BOOL
    case = next(op for op in graph.walk() if op.name == "case")
    assert len(case.regions) == 3 and all(not r.args for r in case.regions)


def test_calls_are_inlined_once_per_call():
    inner = jax.jit(lambda y: jnp.sin(y) * 3.0)
    graph = import_fn(lambda x: inner(x) + inner(x + 1.0), X)
    assert op_names(graph).count("sine") == 2
    assert len(graph.body.ops) == len(set(map(id, graph.body.ops)))


def test_legacy_dot_broadcast_and_sdy_ops():
    text = """
    sdy.mesh @mesh = <["a"=1]>
    func.func @main(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>) -> tensor<5x2x4xf32> {
      %0 = "stablehlo.dot"(%a, %b) : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
      %1 = sdy.sharding_constraint %0 <@mesh, [{}, {}]> : tensor<2x4xf32>
      %2 = sdy.manual_computation(%1) in_shardings=[<@mesh, [{}, {}]>] out_shardings=[<@mesh, [{}, {}]>] manual_axes={} (%x: tensor<2x4xf32>) {
        %n = stablehlo.negate %x : tensor<2x4xf32>
        sdy.return %n : tensor<2x4xf32>
      } : (tensor<2x4xf32>) -> tensor<2x4xf32>
      %3 = "stablehlo.broadcast"(%2) {broadcast_sizes = array<i64: 5>} : (tensor<2x4xf32>) -> tensor<5x2x4xf32>
      return %3 : tensor<5x2x4xf32>
    }"""
    graph = import_stablehlo(text)
    assert op_names(graph) == ["dot_general", "negate", "broadcast_in_dim", "return"]
    dot, _, bcast, _ = graph.body.ops
    assert dot.attrs["lhs_contracting_dimensions"] == (1,) and dot.attrs["rhs_contracting_dimensions"] == (0,)
    assert bcast.attrs["broadcast_dimensions"] == (1, 2)


def test_dense_resource_constants():
    text = """
    func.func @main() -> tensor<3xf32> {
      %0 = stablehlo.constant dense_resource<blob1> : tensor<3xf32>
      return %0 : tensor<3xf32>
    }
    {-#
      dialect_resources: { builtin: { blob1: "0x040000000000803F0000004000004040" } }
    #-}"""
    (op,) = [op for op in import_stablehlo(text).body.ops if op.name == "constant"]
    _assert_bits_equal(op.attrs["value"], np.array([1.0, 2.0, 3.0], np.float32))
