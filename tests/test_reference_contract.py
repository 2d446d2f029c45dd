"""dot_general and convolution against XLA:CPU.

XLA accumulates f32 products in f32, the executor in f64, so float results may differ by
the rounding of the sum: the tolerance is K ulps of the sum of |products|."""

import numpy as np
import pytest
from jax import lax

from reference_oracle import T, assert_same, np_dtype, rand, rng_for, run_one, tensor_type, xla, xla_stablehlo
from xchip.ir import dtypes


def _sum_tolerance(result_dtype: str, magnitude: np.ndarray, k: int) -> np.ndarray:
    d = dtypes.get(result_dtype)
    if not (d.is_float or d.is_complex):
        return np.zeros(magnitude.shape)
    eps = {"f16": 2.0 ** -10, "bf16": 2.0 ** -7, "f32": 2.0 ** -23, "f64": 2.0 ** -52,
           "c64": 2.0 ** -23, "c128": 2.0 ** -52}[d.name]
    return (k + 2) * eps * magnitude


DOTS = {
    "matmul": dict(lhs=(4, 6), rhs=(6, 5), lb=(), rb=(), lc=(1,), rc=(0,)),
    "batched": dict(lhs=(3, 4, 6), rhs=(3, 6, 2), lb=(0,), rb=(0,), lc=(2,), rc=(1,)),
    "shuffled": dict(lhs=(2, 3, 4, 5), rhs=(5, 2, 4, 6), lb=(0,), rb=(1,), lc=(3, 2), rc=(0, 2)),
    "outer": dict(lhs=(3,), rhs=(4,), lb=(), rb=(), lc=(), rc=()),
    "vector": dict(lhs=(7,), rhs=(7,), lb=(), rb=(), lc=(0,), rc=(0,)),
    "two_batch_dims": dict(lhs=(2, 5, 3, 4), rhs=(3, 4, 2, 6), lb=(2, 0), rb=(0, 2), lc=(3,), rc=(1,)),
}

# (lhs dtype, rhs dtype, result dtype)
DOT_TYPES = [("f32", "f32", "f32"), ("f64", "f64", "f64"), ("bf16", "bf16", "f32"), ("f16", "f16", "f16"),
             ("bf16", "bf16", "bf16"), ("i8", "i8", "i32"), ("i32", "i32", "i32"), ("u8", "u8", "u32"),
             ("i64", "i64", "i64"), ("c64", "c64", "c64"), ("c128", "c128", "c128"), ("i16", "i16", "i16")]


@pytest.mark.parametrize("name", sorted(DOTS))
@pytest.mark.parametrize("types", DOT_TYPES, ids=lambda t: "x".join(t))
def test_dot_general_matches_xla(name, types):
    c = DOTS[name]
    lt, rt_, out = types
    rng = rng_for("dot", name, types)
    lhs, rhs = rand(lt, c["lhs"], rng), rand(rt_, c["rhs"], rng)
    dims = (((c["lc"]), (c["rc"])), ((c["lb"]), (c["rb"])))
    attrs = {"lhs_batching_dimensions": c["lb"], "rhs_batching_dimensions": c["rb"],
             "lhs_contracting_dimensions": c["lc"], "rhs_contracting_dimensions": c["rc"]}
    want = xla(lambda a, b: lax.dot_general(a, b, dims, preferred_element_type=np_dtype(out)), lhs, rhs)
    got = run_one("dot_general", [lhs, rhs], attrs, [T(want.shape, out)])
    k = int(np.prod([c["lhs"][d] for d in c["lc"]]))
    if dtypes.get(out).kind in ("int", "uint"):
        assert_same(got, want, what=f"{name} {types}")
        return
    magnitude = xla(lambda a, b: lax.dot_general(a, b, dims), _abs64(lhs), _abs64(rhs))
    assert_same(got, want, atol=_sum_tolerance(out, magnitude, k), rtol=0.0, what=f"{name} {types}")


def _abs64(x: np.ndarray) -> np.ndarray:
    return np.abs(x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)).astype(np.float64)


def test_integer_dot_wraps_around_exactly():
    lhs = np.full((2, 300), 127, np.int8)
    rhs = np.full((300, 3), 127, np.int8)
    got = run_one("dot_general", [lhs, rhs], {"lhs_contracting_dimensions": (1,), "rhs_contracting_dimensions": (0,)},
                  [T((2, 3), "i8")])
    assert (got == np.int8(np.int64(127 * 127 * 300) & 0xFF if (127 * 127 * 300) & 0xFF < 128
                           else ((127 * 127 * 300) & 0xFF) - 256)).all()
    big = np.full((1, 4), 2 ** 40 + 7, np.int64)
    got = run_one("dot_general", [big, big.T.copy()], {"lhs_contracting_dimensions": (1,), "rhs_contracting_dimensions": (0,)})
    assert got[0, 0] == np.int64(((4 * (2 ** 40 + 7) ** 2) + 2 ** 63) % 2 ** 64 - 2 ** 63)


def test_mixed_integer_operand_types_match_xla():
    rng = rng_for("dot-mixed")
    lhs, rhs = rand("u8", (3, 5), rng), rand("i8", (5, 2), rng)
    got = run_one("dot_general", [lhs, rhs], {"lhs_contracting_dimensions": (1,), "rhs_contracting_dimensions": (0,)},
                  [T((3, 2), "i32")])
    body = ("%0 = stablehlo.dot_general %a0, %a1, contracting_dims = [1] x [0] : "
            "(tensor<3x5xui8>, tensor<5x2xi8>) -> tensor<3x2xi32>\nreturn %0 : tensor<3x2xi32>")
    (want,) = xla_stablehlo(body, [lhs, rhs], [((3, 2), np.int32)])
    assert_same(got, want)


# --- convolution ---------------------------------------------------------------------------

def _layout(spec: str):
    """'NCHW', 'OIHW', ... -> (batch-or-out, feature-or-in, spatial dims in H, W, D order)."""
    first = spec.index("N") if "N" in spec else spec.index("O")
    second = spec.index("C") if "C" in spec else spec.index("I")
    spatial = [spec.index(ch) for ch in "HWD" if ch in spec]
    return first, second, spatial


CONVS = {
    "nchw_plain": dict(lhs="NCHW", rhs="OIHW", out="NCHW", n=2, c=3, o=4, sp=(6, 5), k=(3, 2)),
    "nhwc_strided_padded_dilated": dict(lhs="NHWC", rhs="HWIO", out="NHWC", n=2, c=2, o=3, sp=(7, 6), k=(3, 2),
                                        strides=(2, 1), padding=((1, 2), (0, 1)), lhs_dilation=(2, 1),
                                        rhs_dilation=(1, 2)),
    "negative_padding": dict(lhs="NCHW", rhs="OIHW", out="NHWC", n=1, c=2, o=2, sp=(8, 7), k=(2, 2),
                             padding=((-1, 2), (1, -2))),
    "feature_groups": dict(lhs="NCHW", rhs="OIHW", out="NCHW", n=2, c=4, o=6, sp=(5, 5), k=(3, 3), fgc=2),
    "depthwise": dict(lhs="NHWC", rhs="HWIO", out="NHWC", n=1, c=3, o=6, sp=(6, 4), k=(2, 3), fgc=3),
    "batch_groups": dict(lhs="NCHW", rhs="OIHW", out="NCHW", n=4, c=3, o=4, sp=(5, 4), k=(2, 2), bgc=2),
    "one_d": dict(lhs="NWC", rhs="WIO", out="NWC", n=3, c=2, o=3, sp=(9,), k=(3,), strides=(2,)),
    "three_d": dict(lhs="NCHWD", rhs="OIHWD", out="NCHWD", n=1, c=2, o=2, sp=(4, 3, 5), k=(2, 2, 3)),
    "odd_layout": dict(lhs="HNCW", rhs="IHOW", out="WHCN", n=2, c=3, o=2, sp=(5, 6), k=(2, 3),
                       padding=((2, 0), (1, 1)), lhs_dilation=(1, 3), rhs_dilation=(2, 1)),
}


def _conv_case(name, lt, out_dt, rng):
    c = CONVS[name]
    nsp = len(c["sp"])
    fgc, bgc = c.get("fgc", 1), c.get("bgc", 1)
    lhs_shape = [0] * (nsp + 2)
    ib, if_, isd = _layout(c["lhs"])
    lhs_shape[ib], lhs_shape[if_] = c["n"], c["c"]
    for d, s in zip(isd, c["sp"]):
        lhs_shape[d] = s
    rhs_shape = [0] * (nsp + 2)
    ko, ki, ksd = _layout(c["rhs"].replace("O", "N").replace("I", "C"))
    rhs_shape[ko], rhs_shape[ki] = c["o"], c["c"] // fgc
    for d, s in zip(ksd, c["k"]):
        rhs_shape[d] = s
    lhs, rhs = rand(lt, lhs_shape, rng), rand(lt, rhs_shape, rng)
    ob, of, osd = _layout(c["out"])
    attrs = dict(
        window_strides=c.get("strides", (1,) * nsp), padding=c.get("padding", ((0, 0),) * nsp),
        lhs_dilation=c.get("lhs_dilation", (1,) * nsp), rhs_dilation=c.get("rhs_dilation", (1,) * nsp),
        window_reversal=(False,) * nsp, input_batch_dimension=ib, input_feature_dimension=if_,
        input_spatial_dimensions=tuple(isd), kernel_input_feature_dimension=ki,
        kernel_output_feature_dimension=ko, kernel_spatial_dimensions=tuple(ksd), output_batch_dimension=ob,
        output_feature_dimension=of, output_spatial_dimensions=tuple(osd), feature_group_count=fgc,
        batch_group_count=bgc)
    spec = (c["lhs"].replace("D", "X"), c["rhs"].replace("D", "X"), c["out"].replace("D", "X"))
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, spec)

    def oracle(a, b):
        return lax.conv_general_dilated(
            a, b, attrs["window_strides"], attrs["padding"], attrs["lhs_dilation"], attrs["rhs_dilation"], dn,
            feature_group_count=fgc, batch_group_count=bgc, preferred_element_type=np_dtype(out_dt))
    return lhs, rhs, attrs, oracle, c["c"] // fgc * int(np.prod(c["k"]))


@pytest.mark.parametrize("name", sorted(CONVS))
@pytest.mark.parametrize("types", [("f32", "f32"), ("f64", "f64"), ("bf16", "f32"), ("i8", "i32"), ("f16", "f16")],
                         ids=lambda t: "x".join(t))
def test_convolution_matches_xla(name, types):
    lt, out = types
    rng = rng_for("conv", name, types)
    lhs, rhs, attrs, oracle, k = _conv_case(name, lt, out, rng)
    want = xla(oracle, lhs, rhs)
    got = run_one("convolution", [lhs, rhs], attrs, [T(want.shape, out)])
    if out[0] in "iu":
        assert_same(got, want, what=f"{name} {types}")
        return
    magnitude = xla(lambda a, b: oracle(a, b).astype(np.float64), _abs64(lhs).astype(lhs.dtype), _abs64(rhs).astype(rhs.dtype))
    assert_same(got, want, atol=_sum_tolerance(out, magnitude.astype(np.float64), k), rtol=0.0,
                what=f"{name} {types}")


@pytest.mark.parametrize("name", ["nchw_plain", "nhwc_strided_padded_dilated", "three_d"])
def test_window_reversal_is_a_flipped_kernel(name):
    rng = rng_for("reversal", name)
    lhs, rhs, attrs, oracle, k = _conv_case(name, "f64", "f64", rng)
    nsp = len(attrs["kernel_spatial_dimensions"])
    reversal = tuple(i % 2 == 0 for i in range(nsp))
    flipped = np.flip(rhs, axis=tuple(d for d, r in zip(attrs["kernel_spatial_dimensions"], reversal) if r)).copy()
    want = xla(oracle, lhs, flipped)
    got = run_one("convolution", [lhs, rhs], {**attrs, "window_reversal": reversal}, [T(want.shape, "f64")])
    assert_same(got, want)


def test_convolution_in_stablehlo_text_with_reversal():
    rng = rng_for("conv-text")
    lhs, rhs = rand("f32", (1, 2, 5), rng), rand("f32", (3, 2, 3), rng)
    attrs = dict(window_strides=(1,), padding=((1, 1),), lhs_dilation=(1,), rhs_dilation=(1,),
                 window_reversal=(True,), input_batch_dimension=0, input_feature_dimension=1,
                 input_spatial_dimensions=(2,), kernel_input_feature_dimension=1,
                 kernel_output_feature_dimension=0, kernel_spatial_dimensions=(2,), output_batch_dimension=0,
                 output_feature_dimension=1, output_spatial_dimensions=(2,))
    got = run_one("convolution", [lhs, rhs], attrs, [T((1, 3, 5), "f32")])
    body = ("%0 = stablehlo.convolution(%a0, %a1) dim_numbers = [b, f, 0]x[o, i, 0]->[b, f, 0], "
            "window = {stride = [1], pad = [[1, 1]], lhs_dilate = [1], rhs_dilate = [1], reverse = [true]} "
            "{batch_group_count = 1 : i64, feature_group_count = 1 : i64} : "
            f"({tensor_type(lhs.shape, lhs.dtype)}, {tensor_type(rhs.shape, rhs.dtype)}) -> tensor<1x3x5xf32>\n"
            "return %0 : tensor<1x3x5xf32>")
    (want,) = xla_stablehlo(body, [lhs, rhs], [((1, 3, 5), np.float32)])
    assert_same(got, want)

