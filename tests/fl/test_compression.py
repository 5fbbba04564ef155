"""The meta-pFL uplink: top-k with error feedback, seeded sketches, sparse recovery."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.fl.algorithms.compression import (
    ErrorFeedback,
    GaussianSketch,
    PartialDftSketch,
    UplinkCodec,
    amp,
    iht,
    make_sketch,
    top_k,
)


def _sparse(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(d)
    x[rng.choice(d, k, replace=False)] = rng.normal(0, 1, k) * rng.uniform(0.5, 3, k)
    return x


def test_top_k_keeps_the_largest_magnitudes():
    v = np.array([0.5, -3.0, 1.0, 2.5, -0.1])
    np.testing.assert_array_equal(top_k(v, 2), [0.0, -3.0, 0.0, 2.5, 0.0])
    np.testing.assert_array_equal(top_k(v, 9), v)


def test_error_feedback_conserves_update_mass_over_rounds():
    """For every agent and after every round: sum of inputs = sum of what was sent + memory, whether
    the agent transmitted (sent = its top-k) or was told to stay silent (sent = 0)."""
    rng = np.random.default_rng(0)
    n_agents, d, k = 3, 50, 4
    ef = ErrorFeedback(n_agents, d, k)
    inputs = np.zeros((n_agents, d))
    sent = np.zeros((n_agents, d))
    for _ in range(25):
        for a in range(n_agents):
            g = rng.normal(0, 1, d)
            s, v = ef.propose(a, g)
            assert np.count_nonzero(s) == k
            delivered = bool(rng.uniform() < 0.7)
            out = s if delivered else np.zeros(d)
            ef.commit(a, v, out)
            inputs[a] += g
            sent[a] += out
            np.testing.assert_allclose(sent[a] + ef.memory[a], inputs[a], rtol=0, atol=1e-11)
    assert np.abs(ef.memory).sum() > 0  # the memory really carries something


def test_clipped_transmissions_still_conserve_mass_and_the_server_projects():
    """With a norm bound C: every sent vector has norm <= C, memory keeps the rest (conservation),
    and the server's estimate is projected onto the ball of radius C (the mean of vectors in it)."""
    rng = np.random.default_rng(5)
    codec = UplinkCodec.build(40, 2, 0.25, True, "none", 0.5, "iht", 10, seed=0, clip_norm=1.0)
    total_in, total_sent = np.zeros(40), np.zeros(40)
    for _ in range(10):
        g = rng.normal(0, 3, 40)
        payload, pending = codec.encode(0, g)
        assert np.linalg.norm(payload) <= 1.0 + 1e-12
        codec.commit(0, pending, delivered=True)
        total_in += g
        total_sent += payload
        np.testing.assert_allclose(total_sent + codec.feedback.memory[0], total_in, atol=1e-11)
    noisy = rng.normal(0, 10, 40)
    assert np.linalg.norm(codec.decode(noisy, 2)) == pytest.approx(1.0)


def test_error_feedback_off_forgets_what_top_k_dropped():
    ef = ErrorFeedback(1, 10, 2, enabled=False)
    s, v = ef.propose(0, np.arange(10.0))
    ef.commit(0, v, s)
    assert np.all(ef.memory == 0) and np.count_nonzero(s) == 2


@pytest.mark.parametrize("kind", ["gaussian", "dft"])
def test_sketch_adjoint_is_the_transpose(kind):
    rng = np.random.default_rng(1)
    sketch = make_sketch(kind, 301, 0.4, seed=5)
    x, y = rng.normal(size=301), rng.normal(size=sketch.m)
    assert sketch.forward(x) @ y == pytest.approx(x @ sketch.adjoint(y), rel=1e-12)
    # shared by seed: the server rebuilds exactly the agents' sketch
    np.testing.assert_array_equal(make_sketch(kind, 301, 0.4, seed=5).forward(x), sketch.forward(x))


def test_partial_dft_rows_are_orthonormal_at_a_fast_length():
    sketch = PartialDftSketch(400, 120, seed=2)  # 400 = 2^4 5^2 is its own FFT length
    a = np.stack([sketch.forward(e) for e in np.eye(400)], axis=1)
    np.testing.assert_allclose(a @ a.T, np.eye(sketch.m), atol=1e-12)


@pytest.mark.parametrize("recover", [iht, amp])
@pytest.mark.parametrize("sketch_cls", [GaussianSketch, PartialDftSketch])
def test_compression_and_recovery_return_a_sparse_vector_exactly(sketch_cls, recover):
    """Noise-free: y = A x with x k-sparse (d = 500, m = 250, k = 25) comes back to ~1e-9."""
    rng = np.random.default_rng(3)
    x = _sparse(500, 25, rng)
    sketch = sketch_cls(500, 250, seed=7)
    estimate = recover(sketch, sketch.forward(x), 25, 200)
    assert np.linalg.norm(estimate - x) <= 1e-9 * np.linalg.norm(x)
    assert np.count_nonzero(np.abs(estimate) > 1e-9) == 25


def test_codec_recovers_the_mean_of_sparse_updates_through_a_linear_sum():
    """The air sums sketches: decode(mean of A s_k) = mean of s_k (union of three k-sparse supports)."""
    rng = np.random.default_rng(4)
    codec = UplinkCodec.build(600, 3, 0.02, True, "dft", 0.5, "iht", 100, seed=1)
    payloads, sparse = [], []
    for a in range(3):
        payload, (s, _v) = codec.encode(a, rng.normal(size=600))
        payloads.append(payload)
        sparse.append(s)
    assert len(payloads[0]) == codec.n_values == 300 and codec.k == 12
    estimate = codec.decode(np.mean(payloads, axis=0), n_sources=3)
    exact = np.mean(sparse, axis=0)
    assert np.linalg.norm(estimate - exact) <= 1e-9 * np.linalg.norm(exact)


def test_codec_without_compression_sends_the_sparse_vector():
    codec = UplinkCodec.build(20, 1, 0.1, True, "none", 0.5, "iht", 10, seed=0)
    payload, (s, _v) = codec.encode(0, np.arange(20.0))
    np.testing.assert_array_equal(payload, s)
    np.testing.assert_array_equal(codec.decode(payload, 1), s)
    assert codec.n_values == 20 and np.count_nonzero(s) == 2
