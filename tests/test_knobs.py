"""Search spaces: legality, enumeration and stable config keys."""

from xchip.knobs import Constraint, Knob, SearchSpace, config_key

SPACE = SearchSpace("matmul", (Knob("tile_m", (8, 16, 32)), Knob("tile_k", (4, 8))),
                    (Constraint("tile_k divides tile_m", lambda c: c["tile_m"] % c["tile_k"] == 0),
                     Constraint("tile_m * tile_k <= 128", lambda c: c["tile_m"] * c["tile_k"] <= 128)))


def test_enumeration_keeps_only_legal_configs_in_knob_order():
    assert list(SPACE) == [{"tile_m": 8, "tile_k": 4}, {"tile_m": 8, "tile_k": 8},
                           {"tile_m": 16, "tile_k": 4}, {"tile_m": 16, "tile_k": 8}, {"tile_m": 32, "tile_k": 4}]
    assert SPACE.size == 6


def test_violations_say_why():
    assert SPACE.violations({"tile_m": 16, "tile_k": 8}) == []
    assert SPACE.violations({"tile_m": 32, "tile_k": 8}) == ["tile_m * tile_k <= 128"]
    assert SPACE.violations({"tile_m": 12, "tile_k": 4}) == ["tile_m=12 is not one of [8, 16, 32]"]
    assert SPACE.violations({"tile_m": 8}) == ["missing knob 'tile_k'"]
    assert "unknown knob 'unroll'" in SPACE.violations({"tile_m": 8, "tile_k": 4, "unroll": 2})[0]
    assert not SPACE.is_legal({"tile_m": 32, "tile_k": 8})


def test_config_key_is_order_independent():
    assert config_key({"b": 1, "a": 2}) == config_key({"a": 2, "b": 1}) == '{"a":2,"b":1}'
