"""xchip functions inside jax.jit / grad / vmap: the FFI route (XLA:CPU calls xchip's
compiled program through the C trampoline), the pure_callback route, custom_vjp gradients,
custom_vmap batching, errors. Everything is compared with pure JAX (jax.jit on XLA:CPU)."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xchip
from examples.registry import EXAMPLES
from xchip.errors import ArgumentError, TargetError, XchipError
from xchip.interop import ffi, staging

F32 = dict(rtol=1e-5, atol=1e-5)


def _close(got, want, **tol):
    tol = tol or F32
    got_leaves, want_leaves = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.asarray(g).dtype == np.asarray(w).dtype and np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), **tol)


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _calls() -> int:
    """Runs of every registered program so far (through XLA or a host callback)."""
    return sum(p.calls for p in ffi._programs.values())


def _runs_of(name: str) -> int:
    return sum(p.calls for p in ffi._programs.values() if p.name == name)


def test_inside_jit_matches_and_runs_through_the_trampoline():
    rng = np.random.default_rng(0)

    def shifted_sine(x):
        return jnp.sin(x) * x + 1.0

    xf = xchip.jit(shifted_sine)
    outer = jax.jit(lambda x: xf(x) * 2)
    x = _normal(rng, 4, 8)
    hlo = outer.lower(x).as_text()
    assert "stablehlo.custom_call @xchip_program" in hlo and "xchip_program = " in hlo
    assert "sine" not in hlo                 # the sine is xchip's, not XLA's
    before = _runs_of("shifted_sine")
    _close(outer(x), jax.jit(lambda x: shifted_sine(x) * 2)(x))
    x2 = _normal(rng, 4, 8)                  # a fresh input through the same executable
    _close(outer(x2), jax.jit(lambda x: shifted_sine(x) * 2)(x2))
    assert _runs_of("shifted_sine") == before + 2


def test_gradient_through_jit_both_ways():
    rng = np.random.default_rng(1)

    def softplus_mix(x):
        return jnp.log1p(jnp.exp(x)) * jnp.cos(x)

    xf = xchip.jit(softplus_mix)
    x = _normal(rng, 16)
    want = jax.grad(lambda x: (softplus_mix(x) * 2).sum())(x)
    _close(jax.grad(jax.jit(lambda x: (xf(x) * 2).sum()))(x), want)
    _close(jax.jit(jax.grad(lambda x: (xf(x) * 2).sum()))(x), want)
    _close(jax.grad(lambda x: (xf(x) * 2).sum())(x), want)      # eager grad: no jit at all
    assert _runs_of("vjp_softplus_mix") >= 1                      # the backward pass ran in xchip


def test_grad_of_two_arguments():
    rng = np.random.default_rng(2)

    def layer(x, w):
        return jnp.tanh(x @ w)

    xf = xchip.jit(layer)
    x, w = _normal(rng, 3, 5), _normal(rng, 5, 4)
    loss = lambda f: (lambda x, w: (f(x, w) ** 2).sum())  # noqa: E731
    got = jax.jit(jax.grad(loss(xf), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(loss(layer), argnums=(0, 1)))(x, w)
    _close(got, want)


def test_mlp_example_inside_jit():
    example = EXAMPLES["mlp"]
    params, x = example.make_args(np.random.default_rng(3), "f32")
    xf = xchip.jit(example.fn)
    got = jax.jit(lambda p, x: jax.nn.softmax(xf(p, x)))(params, x)
    want = jax.jit(lambda p, x: jax.nn.softmax(example.fn(p, x)))(params, x)
    _close(got, want, rtol=example.rtol["f32"], atol=example.atol["f32"])


def test_pytrees_and_static_arguments():
    rng = np.random.default_rng(4)

    def model(params, x, scale, *, act="tanh"):
        h = x @ params["w"] + params["b"]
        h = jnp.tanh(h) if act == "tanh" else jax.nn.relu(h)
        return {"out": h * scale, "stats": (h.mean(), h.max(axis=0))}

    xf = xchip.jit(model, static_argnums=2, static_argnames="act")
    params = {"w": _normal(rng, 6, 3), "b": _normal(rng, 3)}
    x = _normal(rng, 5, 6)
    for act in ("tanh", "relu"):
        got = jax.jit(lambda p, x: xf(p, x, 3.0, act=act))(params, x)
        want = jax.jit(lambda p, x: model(p, x, 3.0, act=act))(params, x)
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        _close(got, want)
    grads = jax.jit(jax.grad(lambda p: xf(p, x, 2.0)["out"].sum()))(params)
    _close(grads, jax.grad(lambda p: model(p, x, 2.0)["out"].sum())(params))


def test_vmap_recompiles_the_batched_function():
    rng = np.random.default_rng(5)

    def affine_tanh(x, w):
        return jnp.tanh(x @ w)

    xf = xchip.jit(affine_tanh)
    xs, w = _normal(rng, 7, 3, 4), _normal(rng, 4, 2)
    got = jax.jit(jax.vmap(xf, in_axes=(0, None)))(xs, w)
    _close(got, jax.vmap(affine_tanh, in_axes=(0, None))(xs, w))
    # the batched program is xchip's compilation of vmap(fn), and it ran (no per-row loop)
    batched = [p for p in ffi._programs.values() if p.name == "vmap_affine_tanh"]
    assert batched and batched[0].inputs[0].shape == (7, 3, 4) and batched[0].calls >= 1
    # batch axis not at the front, both arguments batched, no jit around it
    ws = _normal(rng, 7, 4, 2)
    got = jax.vmap(xf, in_axes=(1, 0))(np.moveaxis(xs, 0, 1), ws)
    _close(got, jax.vmap(affine_tanh)(xs, ws))


def test_vmap_of_grad():
    rng = np.random.default_rng(13)

    def wave(x, w):
        return jnp.sin(x * w)

    xf = xchip.jit(wave)
    xs, w = _normal(rng, 6, 5), _normal(rng, 5)
    per_example = jax.jit(jax.vmap(jax.grad(lambda x, w: xf(x, w).sum()), in_axes=(0, None)))(xs, w)
    _close(per_example, jax.vmap(jax.grad(lambda x, w: wave(x, w).sum()), in_axes=(0, None))(xs, w))
    assert _runs_of("vmap_vjp_wave") >= 1      # the batched backward pass, compiled by xchip


def test_a_runtime_error_in_the_program_is_a_jax_error():
    rng = np.random.default_rng(6)

    def doomed(x):
        return jnp.exp(x) - 0.25

    xf = xchip.jit(doomed)
    x = _normal(rng, 5)
    xf(x)                                                       # compile and cache the program
    (compiled,) = xf._cache.values()

    def fail(inputs):   # stands in for a kernel failing at run time, after XLA called xchip
        raise FloatingPointError("kernel exploded on purpose")

    compiled._program = fail                                    # before the first staging registers it
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"FloatingPointError: kernel exploded on purpose"):
        jax.block_until_ready(jax.jit(lambda x: xf(x) + 1)(x))
    # the process is fine: another program runs through the same trampoline
    ok = xchip.jit(lambda x: x * 3.0)
    _close(jax.jit(lambda x: ok(x))(x), x * 3.0)


def test_trampoline_refuses_unknown_programs_and_wrong_buffers():
    rng = np.random.default_rng(7)
    x = _normal(rng, 6)
    spec = jax.ShapeDtypeStruct((6,), np.float32)
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"NOT_FOUND: xchip: no program with id 12345"):
        jax.block_until_ready(jax.jit(lambda x: ffi.ffi_call(12345, [spec], [x])[0])(x))
    xf = xchip.jit(lambda x: x - 1.0)
    xf(x)
    pid = ffi.register(next(iter(xf._cache.values())))
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"INVALID_ARGUMENT: .*compiled for \[6\] -> \[6\]"):
        jax.block_until_ready(jax.jit(lambda y: ffi.ffi_call(pid, [spec], [y])[0])(np.ones(4, np.float32)))


def test_the_pure_callback_route():
    rng = np.random.default_rng(8)

    def wobble(x, y):
        return jnp.sin(x) * y, (x * y).sum()

    xf = xchip.jit(wobble)
    x, y = _normal(rng, 3, 4), _normal(rng, 3, 4)
    with staging.forced_route("callback"):
        outer = jax.jit(lambda x, y: xf(x, y))
        hlo = outer.lower(x, y).as_text()
        got = outer(x, y)
        grads = jax.jit(jax.grad(lambda x, y: xf(x, y)[1] + xf(x, y)[0].sum(), argnums=(0, 1)))(x, y)
    assert "@xchip_program" not in hlo and "callback" in hlo
    _close(got, jax.jit(wobble)(x, y))
    _close(grads, jax.grad(lambda x, y: wobble(x, y)[1] + wobble(x, y)[0].sum(), argnums=(0, 1))(x, y))
    assert _runs_of("wobble") >= 1 and _runs_of("vjp_wobble") >= 1


def test_other_targets_with_tracers_fail_clearly():
    x = np.ones((4, 4), np.float32)
    xf = xchip.jit(lambda x: x @ x, target="h800")
    with pytest.raises(TargetError, match=r"target 'h800.*' .*does not execute in this process.*only target 'cpu'"):
        jax.jit(xf)(x)
    compiled = xf.lower(x).compile()
    with pytest.raises(TargetError, match=r"target 'h800"):
        jax.jit(lambda x: compiled(x))(x)


def test_compiled_program_is_reused_not_recompiled(monkeypatch):
    rng = np.random.default_rng(9)
    compiles = []
    original = xchip.api.Lowered.compile
    monkeypatch.setattr(xchip.api.Lowered, "compile", lambda self: compiles.append(1) or original(self))

    def counted(x):
        return jnp.cos(x) + x

    xf = xchip.jit(counted)
    x = _normal(rng, 8)
    _close(xf(x), jnp.cos(x) + x)                       # eager: compiles once
    before = len(ffi._programs)
    for outer in (jax.jit(lambda x: xf(x)), jax.jit(lambda x: xf(x) * 1.0)):  # two traces of the outer
        for _ in range(3):
            x = _normal(rng, 8)
            _close(outer(x), jnp.cos(x) + x)
    assert len(compiles) == 1 and len(xf._cache) == 1   # one xchip compilation for all of it
    assert len(ffi._programs) == before + 1             # one program registered, shared by both
    assert _runs_of("counted") == 6


def test_ahead_of_time_compiled_inside_jit_and_vmap():
    rng = np.random.default_rng(10)

    def scaled(x):
        return jnp.tanh(x) * 3.0

    x = _normal(rng, 5)
    compiled = xchip.jit(scaled).lower(x).compile()
    _close(jax.jit(lambda x: compiled(x) + 1)(x), scaled(x) + 1)
    xs = _normal(rng, 4, 5)
    _close(jax.jit(jax.vmap(compiled))(xs), jax.vmap(scaled)(xs))   # sequential: one call per row
    with pytest.raises(XchipError, match="ahead-of-time"):
        jax.grad(lambda x: compiled(x).sum())(x)
    with pytest.raises(ArgumentError, match=r"argument 'x'.*expected f32\[5\], got f32\[6\]"):
        jax.jit(lambda x: compiled(x))(_normal(rng, 6))


def test_forward_mode_is_refused_by_custom_vjp():
    xf = xchip.jit(lambda x: x * x)
    x = np.random.default_rng(11).standard_normal(3).astype(np.float32)
    for forward in (lambda: jax.jvp(xf, (x,), (x,)), lambda: jax.jacfwd(xf)(x),
                    lambda: jax.hessian(lambda x: xf(x).sum())(x)):
        with pytest.raises(TypeError, match="forward-mode"):
            forward()


def test_xchip_function_inside_another_is_inlined():
    rng = np.random.default_rng(14)
    inner = xchip.jit(lambda x: jnp.sin(x) * x)
    outer = xchip.jit(lambda x: inner(x) + 1.0)
    x = _normal(rng, 6)
    before = _calls()
    _close(outer(x), np.sin(x) * x + 1.0)
    assert _calls() == before                                     # no custom call: one xchip program
    assert "sine" in outer.lower(x).as_text()


@pytest.mark.filterwarnings("ignore::xchip.errors.FallbackWarning")   # gather/scatter: reference kernels
def test_integer_inputs_and_outputs_under_grad():
    rng = np.random.default_rng(12)

    def gather_scale(x, idx):
        return x[idx] * 2.0, idx + 1

    xf = xchip.jit(gather_scale)
    x, idx = _normal(rng, 10), rng.integers(0, 10, 4).astype(np.int32)
    got = jax.jit(lambda x, i: xf(x, i))(x, idx)
    want = jax.jit(gather_scale)(x, idx)
    _close(got[0], want[0])
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    _close(jax.grad(lambda x: xf(x, idx)[0].sum())(x), jax.grad(lambda x: gather_scale(x, idx)[0].sum())(x))


def test_bf16_and_python_scalar_arguments():
    import ml_dtypes
    rng = np.random.default_rng(15)

    def mixed(a, s):
        return (a * a + s).astype(jnp.float32).sum(axis=0), a * 2

    xf = xchip.jit(mixed)
    a = rng.standard_normal((5, 4)).astype(ml_dtypes.bfloat16)
    got = jax.jit(lambda a: xf(a, 1.5))(a)                  # 1.5: a weak-typed dynamic argument
    want = jax.jit(mixed)(a, 1.5)
    # bf16: a * a + s rounds to bf16 (8 bits of mantissa) in one engine and may keep f32 in
    # the other (XLA's excess precision), so the f32 sums differ by bf16 rounding
    _close(got[0], want[0], rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(np.asarray(got[1], np.float32), np.asarray(want[1], np.float32))


def test_trampoline_reports_the_headers_ffi_version():
    header = (Path(jax.ffi.include_dir()) / "xla/ffi/api/c_api.h").read_text()
    major = int(re.search(r"#define XLA_FFI_API_MAJOR (\d+)", header).group(1))
    minor = int(re.search(r"#define XLA_FFI_API_MINOR (\d+)", header).group(1))
    assert ffi.header_version() == (major, minor)


def test_eager_calls_stay_on_the_host_path():
    xf = xchip.jit(lambda x: x + 2.0)
    x = np.arange(4, dtype=np.float32)
    before = _calls()
    out = xf(x)
    assert type(out) is np.ndarray and _calls() == before   # no JAX program, no trampoline
    np.testing.assert_array_equal(out, x + 2.0)
