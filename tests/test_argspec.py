import numpy as np
import pytest

from xchip.argspec import format_args_spec, parse_args_spec, random_array, random_arrays
from xchip.errors import ParseError
from xchip.ir import TensorType, dtypes


def test_parses_types():
    types = parse_args_spec("f32[64,256], bf16[256,512],i32[],c64[3], bool[2,0]")
    assert [str(t) for t in types] == ["f32[64,256]", "bf16[256,512]", "i32[]", "c64[3]", "bool[2,0]"]
    assert format_args_spec(types) == "f32[64,256],bf16[256,512],i32[],c64[3],bool[2,0]"
    assert parse_args_spec("") == []


@pytest.mark.parametrize("bad, where", [
    ("f32[64,256", "character 1"), ("f33[4]", "unknown dtype 'f33'"), ("f32[4];i32[]", "expected ','"),
    ("f32[4,,2]", "empty dimension"), ("f32[-1]", "character 1"),
])
def test_rejects_bad_specs(bad, where):
    with pytest.raises(ParseError, match=where):
        parse_args_spec(bad)


@pytest.mark.parametrize("name", dtypes.names())
def test_random_arrays_have_the_type_and_are_not_all_zero(name):
    rng = np.random.default_rng()
    t = TensorType((4, 5), dtypes.get(name))
    a = random_array(t, rng)
    assert a.shape == (4, 5) and a.dtype == t.dtype.numpy
    assert np.any(a.astype(np.float64) != 0) if name not in ("c64", "c128") else np.any(a != 0)
    assert len(random_arrays([t, t], rng)) == 2
