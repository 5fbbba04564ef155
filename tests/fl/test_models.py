"""Flat parameter vectors: the space updates live in."""

import numpy as np
import pytest

from airfl.fl.models import count_parameters, get_flat, mlp, set_flat


def test_flat_round_trip():
    model = mlp(64, [16], 10)
    assert count_parameters(model) == 64 * 16 + 16 + 16 * 10 + 10
    v = np.random.default_rng(0).standard_normal(count_parameters(model))
    set_flat(model, v)
    assert np.allclose(get_flat(model), v.astype(np.float32), atol=0)


def test_wrong_length_is_refused():
    with pytest.raises(ValueError, match="trainable parameters"):
        set_flat(mlp(4, [2], 2), np.zeros(3))
