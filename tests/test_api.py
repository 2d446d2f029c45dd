"""xchip.jit against jax.jit: pytrees, static arguments, caching, ahead-of-time stages, errors."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import xchip
from xchip.errors import ArgumentError, TargetError, UnsupportedOpError
from xchip.ir import parse_graph, print_graph, verify


@pytest.fixture
def rng():
    return np.random.default_rng()


def _close(got, want, rtol=1e-5, atol=1e-6):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=rtol, atol=atol)


def test_matches_jax_on_pytrees(rng):
    def f(params, x):
        h = jnp.tanh(x @ params["w"] + params["b"])
        return {"out": h.sum(axis=-1), "aux": (h.max(), x.shape[0])}

    params = {"w": rng.standard_normal((8, 5), np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    x = rng.standard_normal((3, 8)).astype(np.float32)
    got = xchip.jit(f)(params, x)
    want = jax.jit(f)(params, x)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    _close(got, want)
    assert isinstance(got["out"], np.ndarray)   # host results: numpy arrays, no device_put per output


def test_static_arguments_and_cache(rng):
    calls = []

    def f(x, n, *, mode="sum"):
        calls.append(n)
        y = x * n
        return y.sum() if mode == "sum" else y.max()

    xf = xchip.jit(f, static_argnums=1, static_argnames="mode")
    x = rng.standard_normal(6).astype(np.float32)
    _close(xf(x, 3), jax.jit(f, static_argnums=1)(x, 3))
    _close(xf(x, 3, mode="max"), (x * 3).max())
    traced_before = len(calls)
    xf(rng.standard_normal(6).astype(np.float32), 3)       # same signature: no new trace
    assert len(calls) == traced_before
    xf(rng.standard_normal(7).astype(np.float32), 3)       # new shape: traced again
    assert len(calls) == traced_before + 1


def test_lower_and_compile_stages(rng):
    def f(x, y):
        return jnp.maximum(x @ y, 0.0)

    x = rng.standard_normal((4, 8)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    lowered = xchip.jit(f).lower(x, y)
    text = lowered.as_text()
    assert "dot_general" in text and "maximum" in text and "// matmul_0" in text
    assert print_graph(verify(parse_graph(text))) == print_graph(lowered.graph)  # comments aside
    assert "stablehlo.dot_general" in lowered.stablehlo()
    assert [s.name for s in lowered.pass_stats][-2:] == ["fuse", "plan-memory"]
    compiled = lowered.compile()
    assert compiled.target == "cpu" and compiled.runner == "compiled"
    (mm,) = compiled.kernels                       # the relu is the matmul's epilogue
    assert mm.kind == "matmul" and mm.ops[0] == "dot_general" and "maximum" in mm.ops
    assert mm.backend == "tvm-llvm"
    assert mm.flops == 2 * 4 * 8 * 2 + 4 * 2       # the multiply-adds, then one max per output
    assert mm.bytes == (4 * 8 + 8 * 2 + 4 * 2) * 4
    assert str(mm.inputs[0]) == "f32[4,8]"
    _close(compiled(x, y), f(x, y))


def test_lower_with_shape_dtype_structs():
    spec = jax.ShapeDtypeStruct((2, 3), jnp.bfloat16)
    lowered = xchip.jit(lambda a: a * 2).lower(spec)
    assert "bf16[2,3]" in lowered.as_text()


def test_bf16_and_integer_programs(rng):
    def f(a, i):
        return (a * a + 1).astype(jnp.float32).sum(), (i * 3) // 2

    a = rng.standard_normal((5, 4)).astype(ml_dtypes.bfloat16)
    i = rng.integers(-100, 100, (7,), dtype=np.int32)
    got, want = xchip.jit(f)(a, i), jax.jit(f)(a, i)
    _close(got[0], want[0], rtol=1e-2)
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))


def test_locations_point_at_user_lines(rng):
    def f(x):
        return jnp.sin(x)  # the line the IR must point at

    lowered = xchip.jit(f).lower(np.ones(3, np.float32))
    op = next(o for o in lowered.graph.walk() if o.name == "sine")
    assert op.loc.file.endswith("test_api.py")
    assert op.loc.line == f.__code__.co_firstlineno + 1


def test_no_location_points_into_xchip():
    lowered = xchip.jit(lambda x: x * 2.0 + 1.0).lower(np.ones(3, np.float32))
    files = {op.loc.file for op in lowered.graph.walk() if op.loc and op.loc.file}
    assert files and all("xchip/frontend" not in f and "xchip/api" not in f for f in files), files


def test_wrong_argument_shape_names_the_argument():
    def f(x, weights):
        return x @ weights

    compiled = xchip.jit(f).lower(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)).compile()
    with pytest.raises(ArgumentError, match=r"argument 'weights'.*expected f32\[3,4\], got f32\[3,5\]"):
        compiled(np.ones((2, 3), np.float32), np.ones((3, 5), np.float32))
    with pytest.raises(ArgumentError, match=r"argument 'x'.*expected f32\[2,3\], got i8\[2,3\]"):
        compiled(np.ones((2, 3), np.int8), np.ones((3, 4), np.float32))
    with pytest.raises(ArgumentError, match="compiled for arguments"):
        compiled(np.ones((2, 3), np.float32))


def test_unknown_target_lists_the_closest_names():
    with pytest.raises(TargetError, match="unknown target 'h801'.*closest: .*h800"):
        xchip.jit(lambda x: x, target="h801")


def test_targets_that_are_not_here_compile_and_estimate_but_do_not_run():
    f = xchip.jit(lambda x, w: jnp.tanh(x @ w), target="h800")
    x, w = np.ones((64, 128), np.float32), np.ones((128, 32), np.float32)
    compiled = f.lower(x, w).compile()
    assert compiled.target == "h800-sxm" and compiled.runner == "none"
    assert compiled.verification_level == "compiled + emulated"      # machine code, checked in emulation
    assert compiled.kernels[0].kind == "matmul"
    assert compiled.estimate().total_s > 0
    with pytest.raises(TargetError, match="nothing executes on target 'h800-sxm'.*--estimate"):
        compiled(x, w)


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
def test_every_optimization_level_matches_jax(rng, level):
    def f(x, w, b):
        return jax.nn.softmax(jnp.tanh(x @ w + b) * 1.0, axis=-1)

    args = [rng.standard_normal(s).astype(np.float32) for s in ((3, 8), (8, 5), (5,))]
    _close(xchip.jit(f, opt_level=level, debug=True)(*args), jax.jit(f)(*args))


def test_unsupported_op_names_op_and_location():
    def f(x):
        return jnp.fft.fft(x)

    with pytest.raises(UnsupportedOpError) as info:
        xchip.jit(f).lower(np.ones(8, np.complex64))
    assert "fft" in str(info.value)
    assert "test_api.py" in str(info.value)


def test_import_stablehlo_and_run(rng):
    def f(x):
        return jnp.cumsum(x) * 2

    x = rng.standard_normal(10).astype(np.float32)
    text = jax.jit(f).trace(x).lower(lowering_platforms=("xchip",)).as_text()
    graph = xchip.import_stablehlo(text)
    (got,) = xchip.run(graph, x)
    np.testing.assert_allclose(got, np.asarray(jax.jit(f)(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ArgumentError):
        xchip.run(graph, x[:5])
