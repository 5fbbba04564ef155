"""Truncated-SVD re-factorisation of W = B @ A: rank, Eckart-Young error, how the factors split."""

import pytest
import torch

from airfl.fl.lora.factorise import refactorise


def _random_factors(out: int, inp: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, rank, generator=g, dtype=torch.float64), torch.randn(rank, inp, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_rank_and_reconstruction_error(rank):
    b, a = _random_factors(12, 9, 6, seed=rank)
    w = b @ a
    s = torch.linalg.svdvals(w)
    r = refactorise(b, a, rank, a_row_norm=0.5)
    approx = r.b @ r.a
    assert r.b.shape == (12, rank) and r.a.shape == (rank, 9)
    assert int(torch.linalg.matrix_rank(approx)) == rank
    error = float(torch.linalg.norm(w - approx))
    discarded = float(torch.sqrt(torch.sum(s[rank:] ** 2)))
    assert error == pytest.approx(discarded, rel=1e-10, abs=1e-12)
    assert torch.allclose(r.dropped, s[rank:]) and torch.allclose(r.kept, s[:rank])


def test_full_rank_is_exact_and_extra_rank_is_zero_padded():
    b, a = _random_factors(7, 5, 3, seed=0)
    r = refactorise(b, a, 3)
    assert torch.allclose(r.b @ r.a, b @ a, atol=1e-12)
    wide = refactorise(b, a, 6)  # asks for more components than min(7, 5) = 5
    assert torch.allclose(wide.b @ wide.a, b @ a, atol=1e-12)
    assert torch.all(wide.a[5:] == 0) and torch.all(wide.b[:, 5:] == 0)


def test_factors_are_balanced_but_a_rows_never_shorter_than_c():
    # singular values 9 and 1e-6: the first is split sqrt(9) = 3 each, the second keeps |A row| = c
    u = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    v = torch.linalg.qr(torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]
    w = u @ torch.diag(torch.tensor([9.0, 1e-6], dtype=torch.float64)) @ v.T
    r = refactorise(w, torch.eye(4, dtype=torch.float64), 2, a_row_norm=0.5)
    a_norms = torch.linalg.norm(r.a, dim=1)
    b_norms = torch.linalg.norm(r.b, dim=0)
    assert a_norms[0] == pytest.approx(3.0) and b_norms[0] == pytest.approx(3.0)
    assert a_norms[1] == pytest.approx(0.5) and b_norms[1] == pytest.approx(2e-6)
    assert torch.allclose(r.b @ r.a, w, atol=1e-12)


def test_bad_arguments():
    b, a = _random_factors(3, 3, 2, seed=0)
    with pytest.raises(ValueError, match="rank"):
        refactorise(b, a, 0)
    with pytest.raises(ValueError, match="a_row_norm"):
        refactorise(b, a, 1, a_row_norm=0.0)
