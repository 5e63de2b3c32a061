import math

import pytest

from search_spaces.darts import PARAMETER_FREE, PUBLISHED
from ssnas.diagnostics import edge_entropy, search_diagnostics


def test_entropy_of_uniform_and_decided_edges():
    assert edge_entropy({"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}) == pytest.approx(math.log(4))
    assert edge_entropy({"a": 1.0, "b": 0.0}) == 0.0
    assert edge_entropy({"a": 0.5, "b": 0.5}) == pytest.approx(math.log(2))


def test_parameter_free_share_of_darts_v2():
    probs = {"normal": {"0->2": {"x": 0.5, "y": 0.5}}, "reduce": {"0->2": {"x": 1.0, "y": 0.0}}}
    out = search_diagnostics(probs, PUBLISHED["DARTS_V2"], PARAMETER_FREE)
    # DARTS_V2: normal has 2 skips among 8 ops; reduce is all pools and skips -> (2 + 8) / 16
    assert out["parameter_free_share"] == pytest.approx(10 / 16)
    assert out["entropy_normal_norm"] == pytest.approx(1.0) and out["entropy_reduce"] == 0.0
