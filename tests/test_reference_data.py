"""gather, scatter and sort against XLA:CPU (StableHLO text with the same attributes)."""

import numpy as np
import pytest

from reference_oracle import (Builder, T, assert_same, np_dtype, rand, rng_for, run_op, scalar_region,
                              tensor_type, xla_stablehlo)
from xchip.runtime import reference_data


def _dims(**fields) -> str:
    return ", ".join(f"{k} = [{', '.join(map(str, v))}]" if isinstance(v, (tuple, list)) else f"{k} = {v}"
                     for k, v in fields.items() if not (isinstance(v, (tuple, list)) and not v))


# --- gather --------------------------------------------------------------------------------

GATHERS = {
    "embedding": dict(operand=(10, 4), indices=(5, 1), index_vector_dim=1, offset_dims=(1,),
                      collapsed_slice_dims=(0,), start_index_map=(0,), slice_sizes=(1, 4),
                      index_values=[[3], [-3], [12], [9], [0]]),
    "vector_dim_first": dict(operand=(6, 7, 3), indices=(2, 4, 5), index_vector_dim=0, offset_dims=(2, 3),
                             collapsed_slice_dims=(0,), start_index_map=(2, 0), slice_sizes=(1, 3, 2)),
    "scalar_indices": dict(operand=(8, 3), indices=(4,), index_vector_dim=1, offset_dims=(1,),
                           collapsed_slice_dims=(0,), start_index_map=(0,), slice_sizes=(1, 3)),
    "offsets_first": dict(operand=(5, 6), indices=(3, 2), index_vector_dim=1, offset_dims=(0, 2),
                          collapsed_slice_dims=(), start_index_map=(1, 0), slice_sizes=(2, 3)),
    "batching": dict(operand=(3, 5, 4), indices=(3, 6, 1), index_vector_dim=2, offset_dims=(2,),
                     collapsed_slice_dims=(1,), start_index_map=(1,), slice_sizes=(1, 1, 4),
                     operand_batching_dims=(0,), start_indices_batching_dims=(0,)),
    "batching_after_vector_dim": dict(operand=(2, 3, 5), indices=(1, 3, 2), index_vector_dim=0,
                                      offset_dims=(2,), collapsed_slice_dims=(), start_index_map=(2,),
                                      slice_sizes=(1, 1, 2), operand_batching_dims=(0, 1),
                                      start_indices_batching_dims=(2, 1)),
}


def _gather_result_shape(c):
    dropped = set(c["collapsed_slice_dims"]) | set(c.get("operand_batching_dims", ()))
    offsets = [s for d, s in enumerate(c["slice_sizes"]) if d not in dropped]
    batch = [s for d, s in enumerate(c["indices"]) if d != c["index_vector_dim"]]
    shape, b, o = [], iter(batch), iter(offsets)
    for d in range(len(batch) + len(offsets)):
        shape.append(next(o) if d in c["offset_dims"] else next(b))
    return tuple(shape)


@pytest.mark.parametrize("name", sorted(GATHERS))
@pytest.mark.parametrize("idx_dt", ["i32", "u8", "i64"])
def test_gather_matches_xla(name, idx_dt):
    c = GATHERS[name]
    rng = rng_for("gather", name, idx_dt)
    operand = rand("f32", c["operand"], rng)
    if "index_values" in c:
        indices = np.array(c["index_values"], np.int64)
    else:
        indices = rng.integers(-2, 9, c["indices"])
    if idx_dt[0] == "u":
        indices = np.abs(indices)
    indices = indices.astype(np_dtype(idx_dt))
    attrs = {k: c.get(k, ()) for k in ("offset_dims", "collapsed_slice_dims", "operand_batching_dims",
                                       "start_indices_batching_dims", "start_index_map")}
    attrs.update(index_vector_dim=c["index_vector_dim"], slice_sizes=c["slice_sizes"])
    (got,) = run_op("gather", [operand, indices], attrs)
    out_shape = _gather_result_shape(c)
    dn = _dims(offset_dims=attrs["offset_dims"], collapsed_slice_dims=attrs["collapsed_slice_dims"],
               operand_batching_dims=attrs["operand_batching_dims"],
               start_indices_batching_dims=attrs["start_indices_batching_dims"],
               start_index_map=attrs["start_index_map"], index_vector_dim=c["index_vector_dim"])
    rt = tensor_type(out_shape, np.float32)
    body = (f'%0 = "stablehlo.gather"(%a0, %a1) {{dimension_numbers = #stablehlo.gather<{dn}>, '
            f'slice_sizes = array<i64: {", ".join(map(str, c["slice_sizes"]))}>, indices_are_sorted = false}} : '
            f"({tensor_type(operand.shape, operand.dtype)}, {tensor_type(indices.shape, indices.dtype)}) -> {rt}\n"
            f"return %0 : {rt}")
    (want,) = xla_stablehlo(body, [operand, indices], [(out_shape, np.float32)])
    assert_same(got, want, exact=True, what=name)


# --- scatter -------------------------------------------------------------------------------

SCATTERS = {
    "rows": dict(input=(6, 3), indices=(5, 1), updates=(5, 3), index_vector_dim=1, update_window_dims=(1,),
                 inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_values=[[1], [4], [1], [-1], [6]]),
    "partial_windows": dict(input=(6,), indices=(4, 1), updates=(4, 3), index_vector_dim=1,
                            update_window_dims=(1,), inserted_window_dims=(), scatter_dims_to_operand_dims=(0,),
                            index_values=[[0], [4], [-1], [3]]),
    "points_2d": dict(input=(4, 5), indices=(3, 3, 2), updates=(3, 3), index_vector_dim=2,
                      update_window_dims=(), inserted_window_dims=(0, 1), scatter_dims_to_operand_dims=(1, 0)),
    "vector_dim_first": dict(input=(5, 4, 3), indices=(2, 6), updates=(6, 2, 3), index_vector_dim=0,
                             update_window_dims=(1, 2), inserted_window_dims=(0,),
                             scatter_dims_to_operand_dims=(0, 1)),
    "window_first": dict(input=(5, 6), indices=(4,), updates=(5, 4), index_vector_dim=1,
                         update_window_dims=(0,), inserted_window_dims=(1,), scatter_dims_to_operand_dims=(1,)),
    "batching": dict(input=(3, 5, 2), indices=(3, 4, 1), updates=(3, 4, 2), index_vector_dim=2,
                     update_window_dims=(2,), inserted_window_dims=(1,), scatter_dims_to_operand_dims=(1,),
                     input_batching_dims=(0,), scatter_indices_batching_dims=(0,)),
}

def _scatter_region(kind: str, dt: str):
    """A combiner and its StableHLO text: add, replace (take the update), or an
    order-sensitive one (2 * current + update) that shows the order of repeated updates."""
    b = Builder([T((), dt)] * 2)
    x, y = b.args
    t = tensor_type((), np_dtype(dt))
    if kind == "add":
        region = b.ret(b.op("add", [x, y]))
        text = f"%s = stablehlo.add %x, %y : {t}\n stablehlo.return %s : {t}"
    elif kind == "replace":
        region = b.ret(y)
        text = f"stablehlo.return %y : {t}"
    else:
        two = b.const(2, dt)
        region = b.ret(b.op("add", [b.op("multiply", [x, two]), y]))
        text = (f"%c = stablehlo.constant dense<2> : {t}\n %m = stablehlo.multiply %x, %c : {t}\n"
                f" %s = stablehlo.add %m, %y : {t}\n stablehlo.return %s : {t}")
    return region, f"^bb0(%x: {t}, %y: {t}):\n {text}"


# XLA leaves the winner among repeated replacing updates unspecified, so "replace" is
# compared only where no two updates hit one place.
_SCATTER_CASES = [(name, kind, dt) for name in sorted(SCATTERS)
                  for kind, dt in [("add", "f32"), ("add", "i8"), ("replace", "i32"), ("order", "i64")]
                  if kind != "replace" or name == "partial_windows"]


@pytest.mark.parametrize("name,kind,dt", _SCATTER_CASES)
def test_scatter_matches_xla(name, kind, dt):
    c = SCATTERS[name]
    rng = rng_for("scatter", name, kind, dt)
    inp = rand(dt, c["input"], rng, low=-50, high=50)
    upd = rand(dt, c["updates"], rng, low=-50, high=50)
    if dt == "f32":
        inp, upd = np.round(inp), np.round(upd)   # exact sums whatever the order
    if "index_values" in c:
        indices = np.array(c["index_values"], np.int32)
    else:
        indices = rng.integers(-1, 5, c["indices"]).astype(np.int32)
    region, region_text = _scatter_region(kind, dt)
    attrs = {k: c.get(k, ()) for k in ("update_window_dims", "inserted_window_dims", "input_batching_dims",
                                       "scatter_indices_batching_dims", "scatter_dims_to_operand_dims")}
    attrs["index_vector_dim"] = c["index_vector_dim"]
    (got,) = run_op("scatter", [inp, indices, upd], attrs, regions=[region])
    dn = _dims(**{k: attrs[k] for k in attrs})
    tt = tensor_type(inp.shape, inp.dtype)
    body = (f'%0 = "stablehlo.scatter"(%a0, %a1, %a2) ({{\n{region_text}\n}}) '
            f"{{scatter_dimension_numbers = #stablehlo.scatter<{dn}>, indices_are_sorted = false, unique_indices = false}} : "
            f"({tt}, {tensor_type(indices.shape, indices.dtype)}, {tensor_type(upd.shape, upd.dtype)}) -> {tt}\n"
            f"return %0 : {tt}")
    (want,) = xla_stablehlo(body, [inp, indices, upd], [(inp.shape, inp.dtype)])
    assert_same(got, want, exact=True, what=f"{name} {kind} {dt}")


def test_scatter_drops_whole_window_that_does_not_fit():
    inp = np.zeros(6, np.float32)
    idx = np.array([[0], [4], [-1], [3]], np.int32)
    upd = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    attrs = dict(update_window_dims=(1,), inserted_window_dims=(), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1)
    (got,) = run_op("scatter", [inp, idx, upd], attrs, regions=[scalar_region("f32", "add")])
    assert got.tolist() == [1, 2, 3, 10, 11, 12]


def test_variadic_scatter_applies_the_region_to_pairs():
    """Two inputs scattered together: keep the (value, index) pair with the larger value."""
    b = Builder([T((), "f32"), T((), "i32"), T((), "f32"), T((), "i32")])
    v0, i0, v1, i1 = b.args
    take_new = b.op("compare", [v1, v0], {"comparison_direction": "GT", "compare_type": "FLOAT"})
    region = b.ret(b.op("select", [take_new, v1, v0]), b.op("select", [take_new, i1, i0]))
    values = np.array([0.0, 0.0, 0.0], np.float32)
    ids = np.array([-1, -1, -1], np.int32)
    idx = np.array([[0], [2], [0], [0], [5]], np.int32)
    new_values = np.array([3.0, 1.0, 7.0, 5.0, 9.0], np.float32)
    new_ids = np.array([10, 11, 12, 13, 14], np.int32)
    attrs = dict(update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1)
    got_v, got_i = run_op("scatter", [values, ids, idx, new_values, new_ids], attrs, regions=[region])
    assert got_v.tolist() == [7.0, 0.0, 1.0] and got_i.tolist() == [12, -1, 11]


def test_scatter_with_many_repeats_stays_fast_and_exact():
    n = 20000
    idx = np.zeros((n, 1), np.int32)
    upd = np.ones(n, np.int32)
    attrs = dict(update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1)
    (got,) = run_op("scatter", [np.zeros(2, np.int32), idx, upd], attrs, regions=[scalar_region("i32", "add")])
    assert got.tolist() == [n, 0]


# --- sort ----------------------------------------------------------------------------------

def _comparator(dts, key: int, direction: str, compare_type: str):
    """Compare operand `key` of two elements; returns the region and its StableHLO text."""
    b = Builder([T((), d) for d in dts for _ in range(2)])
    lhs, rhs = b.args[2 * key], b.args[2 * key + 1]
    region = b.ret(b.op("compare", [lhs, rhs], {"comparison_direction": direction, "compare_type": compare_type}))
    args = ", ".join(f"%p{i}: {tensor_type((), np_dtype(d))}" for i, d in enumerate(x for x in dts for _ in range(2)))
    t = tensor_type((), np_dtype(dts[key]))
    text = (f"^bb0({args}):\n %c = stablehlo.compare {direction}, %p{2 * key}, %p{2 * key + 1}, {compare_type} : "
            f"({t}, {t}) -> tensor<i1>\n stablehlo.return %c : tensor<i1>")
    return region, text


def _xla_sort(arrays, dimension, region_text, stable=True):
    types = ", ".join(tensor_type(a.shape, a.dtype) for a in arrays)
    ops = ", ".join(f"%a{i}" for i in range(len(arrays)))
    outs = ", ".join(f"%0#{i}" for i in range(len(arrays))) if len(arrays) > 1 else "%0"
    body = (f'%0:{len(arrays)} = "stablehlo.sort"({ops}) ({{\n{region_text}\n}}) '
            f"{{dimension = {dimension} : i64, is_stable = {'true' if stable else 'false'}}} : ({types}) -> ({types})\n"
            f"return {outs} : {types}")
    if len(arrays) == 1:
        body = body.replace("%0:1 =", "%0 =")
    return xla_stablehlo(body, arrays, [(a.shape, a.dtype) for a in arrays])


@pytest.mark.parametrize("dt,compare_type", [("f32", "TOTALORDER"), ("f64", "FLOAT"), ("i8", "SIGNED"),
                                             ("u16", "UNSIGNED"), ("bf16", "TOTALORDER")])
@pytest.mark.parametrize("direction", ["LT", "GT"])
def test_sort_one_operand_matches_xla(dt, compare_type, direction):
    rng = rng_for("sort", dt, direction)
    x = rand(dt, (4, 33), rng, special=compare_type == "TOTALORDER")
    region, text = _comparator([dt], 0, direction, compare_type)
    for dim in (0, 1):
        (got,) = run_op("sort", [x], {"dimension": dim, "is_stable": True}, regions=[region])
        (want,) = _xla_sort([x], dim, text)
        assert_same(got, want, exact=True, what=f"sort {dt} dim {dim}")


def test_sort_keys_with_payload_is_stable_like_xla():
    rng = rng_for("sort-pairs")
    keys = rng.integers(0, 4, (3, 50)).astype(np.int32)
    values = rand("f32", (3, 50), rng)
    ids = np.broadcast_to(np.arange(50, dtype=np.int32), (3, 50)).copy()
    region, text = _comparator(["i32", "f32", "i32"], 0, "LT", "SIGNED")
    got = run_op("sort", [keys, values, ids], {"dimension": 1, "is_stable": True}, regions=[region])
    want = _xla_sort([keys, values, ids], 1, text)
    for g, w in zip(got, want):
        assert_same(g, w, exact=True)
    order = np.argsort(keys, axis=1, kind="stable")
    assert (got[2] == order).all()


@pytest.mark.parametrize("n", [2, 7, 64, 300])
def test_merge_sort_path_matches_xla(n, monkeypatch):
    """Rows longer than the all-pairs limit use the merge sort; force it on short rows too."""
    monkeypatch.setattr(reference_data, "_ALL_PAIRS_MAX", 1)
    rng = rng_for("merge-sort", n)
    keys = rand("f32", (3, n), rng, special=True)
    keys[:, ::3] = keys[:, :1]                     # plenty of ties
    ids = np.broadcast_to(np.arange(n, dtype=np.int32), (3, n)).copy()
    for direction in ("LT", "GT"):
        region, text = _comparator(["f32", "i32"], 0, direction, "TOTALORDER")
        got = run_op("sort", [keys, ids], {"dimension": -1, "is_stable": True}, regions=[region])
        want = _xla_sort([keys, ids], 1, text)
        for g, w in zip(got, want):
            assert_same(g, w, exact=True, what=f"merge sort {direction} n={n}")


def test_long_rows_sort_fast_and_stably():
    rng = rng_for("long-sort")
    keys = rng.integers(0, 50, 20000).astype(np.int32)
    ids = np.arange(20000, dtype=np.int32)
    region, _ = _comparator(["i32", "i32"], 0, "LT", "SIGNED")
    got = run_op("sort", [keys, ids], {"dimension": 0, "is_stable": True}, regions=[region])
    assert (got[1] == np.argsort(keys, kind="stable")).all()


def test_sort_with_non_strict_comparator_still_sorts():
    """LE is not a strict weak order; the result must still be ordered."""
    x = np.array([3, 1, 3, 2, 1, 3, 0], np.int32)
    region, _ = _comparator(["i32"], 0, "LE", "SIGNED")
    (got,) = run_op("sort", [x], {"dimension": 0, "is_stable": True}, regions=[region])
    assert got.tolist() == sorted(x.tolist())


@pytest.mark.parametrize("dt", ["f32", "f16", "bf16"])
def test_scatter_add_with_repeats_rounds_in_update_order_like_xla(dt):
    """Repeated float updates accumulate one after another in update order, rounding each
    step, as XLA:CPU does (bf16 takes the general path, f16/f32 numpy's ufunc.at)."""
    rng = rng_for("scatter-order", dt)
    inp = rand(dt, (4,), rng)
    idx = rng.integers(0, 4, (200, 1)).astype(np.int32)
    upd = rand(dt, (200,), rng)
    attrs = dict(update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1)
    region, text = _scatter_region("add", dt)
    (got,) = run_op("scatter", [inp, idx, upd], attrs, regions=[region])
    tt = tensor_type(inp.shape, inp.dtype)
    body = (f'%0 = "stablehlo.scatter"(%a0, %a1, %a2) ({{\n{text}\n}}) '
            "{scatter_dimension_numbers = #stablehlo.scatter<inserted_window_dims = [0], "
            "scatter_dims_to_operand_dims = [0], index_vector_dim = 1>, indices_are_sorted = false, "
            f"unique_indices = false}} : ({tt}, tensor<200x1xi32>, {tensor_type(upd.shape, upd.dtype)}) -> {tt}\n"
            f"return %0 : {tt}")
    (want,) = xla_stablehlo(body, [inp, idx, upd], [(inp.shape, inp.dtype)])
    assert_same(got, want, exact=True)
