"""Shape and data-movement ops of the reference executor against XLA:CPU."""

import numpy as np
import pytest
from jax import lax

from reference_oracle import T, assert_same, np_dtype, rand, rng_for, run_one, tensor_type, xla, xla_stablehlo

DTYPES = ["f32", "bf16", "i8", "u64", "bool", "c64", "f8e5m2"]


@pytest.mark.parametrize("dt", DTYPES)
def test_broadcast_reshape_transpose_reverse(dt):
    rng = rng_for("shape", dt)
    x = rand(dt, (2, 1, 3), rng)
    got = run_one("broadcast_in_dim", [x], {"broadcast_dimensions": (0, 2, 3)}, [T((2, 5, 4, 3), dt)])
    assert_same(got, xla(lambda v: lax.broadcast_in_dim(v, (2, 5, 4, 3), (0, 2, 3)), x), exact=True)
    got = run_one("reshape", [x], result_types=[T((3, 2), dt)])
    assert_same(got, xla(lambda v: lax.reshape(v, (3, 2)), x), exact=True)
    y = rand(dt, (2, 3, 4), rng)
    got = run_one("transpose", [y], {"permutation": (2, 0, 1)})
    assert_same(got, xla(lambda v: lax.transpose(v, (2, 0, 1)), y), exact=True)
    got = run_one("reverse", [y], {"dimensions": (0, 2)})
    assert_same(got, xla(lambda v: lax.rev(v, (0, 2)), y), exact=True)


def test_broadcast_in_dim_with_unsorted_dimensions():
    x = rand("f32", (3, 2), rng_for("bcast"))
    got = run_one("broadcast_in_dim", [x], {"broadcast_dimensions": (2, 0)}, [T((2, 4, 3), "f32")])
    (want,) = xla_stablehlo(
        "%0 = stablehlo.broadcast_in_dim %a0, dims = [2, 0] : (tensor<3x2xf32>) -> tensor<2x4x3xf32>\n"
        "return %0 : tensor<2x4x3xf32>", [x], [((2, 4, 3), np.float32)])
    assert_same(got, want, exact=True)
    assert got[1, 2, 0] == x[0, 1]


@pytest.mark.parametrize("dt", DTYPES)
def test_slice_and_concatenate(dt):
    rng = rng_for("slice", dt)
    x = rand(dt, (5, 7, 3), rng)
    attrs = {"start_indices": (1, 0, 2), "limit_indices": (5, 7, 3), "strides": (2, 3, 1)}
    got = run_one("slice", [x], attrs)
    assert_same(got, xla(lambda v: lax.slice(v, (1, 0, 2), (5, 7, 3), (2, 3, 1)), x), exact=True)
    parts = [rand(dt, (2, n, 3), rng) for n in (1, 4, 2)]
    got = run_one("concatenate", parts, {"dimension": 1})
    assert_same(got, xla(lambda *p: lax.concatenate(p, 1), *parts), exact=True)


@pytest.mark.parametrize("config", [
    [(1, 2, 0), (0, 0, 0)],
    [(-1, 2, 1), (2, -2, 2)],
    [(0, 0, 3), (-3, 1, 0)],
    [(-2, -1, 1), (1, 1, 1)],
])
def test_pad_with_negative_and_interior_padding(config):
    rng = rng_for("pad", str(config))
    x = rand("f32", (4, 5), rng)
    value = np.array(-7.5, np.float32)
    attrs = {"edge_padding_low": tuple(c[0] for c in config), "edge_padding_high": tuple(c[1] for c in config),
             "interior_padding": tuple(c[2] for c in config)}
    got = run_one("pad", [x, value], attrs)
    assert_same(got, xla(lambda v, p: lax.pad(v, p, config), x, value), exact=True)


@pytest.mark.parametrize("dt", ["i32", "u8", "f32", "bf16", "c64", "i64", "f16"])
def test_iota(dt):
    shape = (3, 300) if dt == "u8" else (3, 4, 5)
    for dim in range(len(shape)):
        got = run_one("iota", [], {"iota_dimension": dim}, [T(shape, dt)])
        assert_same(got, xla(lambda: lax.broadcasted_iota(np_dtype(dt), shape, dim)), exact=True,
                    what=f"iota {dt} dim {dim}")


def _dynamic_slice_hlo(x, starts, sizes):
    idx_t = tensor_type((), starts[0].dtype)
    ops = ", ".join(f"%a{i + 1}" for i in range(len(starts)))
    out = tensor_type(sizes, x.dtype)
    body = (f"%0 = stablehlo.dynamic_slice %a0, {ops}, sizes = [{', '.join(map(str, sizes))}] : "
            f"({tensor_type(x.shape, x.dtype)}, {', '.join([idx_t] * len(starts))}) -> {out}\n"
            f"return %0 : {out}")
    (r,) = xla_stablehlo(body, [x, *starts], [(sizes, x.dtype)])
    return r


@pytest.mark.parametrize("starts,idx_dt", [(s, d) for s in [(1, 2), (-3, 9), (7, -1), (0, 0), (2, 100)]
                                            for d in ["i32", "u32", "i64"] if d[0] != "u" or min(s) >= 0])
def test_dynamic_slice_clamps_start_indices(starts, idx_dt):
    x = rand("f32", (5, 6), rng_for("ds", starts))
    idx = [np.array(s, np_dtype(idx_dt)) for s in starts]
    got = run_one("dynamic_slice", [x, *idx], {"slice_sizes": (2, 3)})
    assert_same(got, _dynamic_slice_hlo(x, idx, (2, 3)), exact=True)


@pytest.mark.parametrize("starts", [(1, 2), (-3, 9), (7, -1), (3, 3)])
def test_dynamic_update_slice_clamps_start_indices(starts):
    rng = rng_for("dus", starts)
    x, update = rand("i16", (5, 6), rng), rand("i16", (2, 4), rng)
    idx = [np.array(s, np.int32) for s in starts]
    got = run_one("dynamic_update_slice", [x, update, *idx])
    tt, ut, it = tensor_type(x.shape, x.dtype), tensor_type(update.shape, x.dtype), tensor_type((), np.int32)
    (want,) = xla_stablehlo(f"%0 = stablehlo.dynamic_update_slice %a0, %a1, %a2, %a3 : "
                            f"({tt}, {ut}, {it}, {it}) -> {tt}\nreturn %0 : {tt}", [x, update, *idx],
                            [(x.shape, x.dtype)])
    assert_same(got, want)
    assert not np.shares_memory(got, x)


def test_scalars_and_empty_tensors():
    x = np.array(2.5, np.float32)
    assert_same(run_one("reshape", [x], result_types=[T((1, 1), "f32")]), np.full((1, 1), 2.5, np.float32))
    e = np.zeros((0, 3), np.float32)
    assert run_one("transpose", [e], {"permutation": (1, 0)}).shape == (3, 0)
    got = run_one("pad", [e, np.array(1.0, np.float32)],
                  {"edge_padding_low": (1, 0), "edge_padding_high": (1, 0), "interior_padding": (2, 0)})
    assert_same(got, np.ones((2, 3), np.float32))
