"""Re-factorising a LoRA update W = B @ A to a smaller rank by truncated SVD.

With W = U S V^T, keeping the top `rank` singular triplets gives the best rank-`rank` approximation
in the Frobenius norm (Eckart-Young), and the error is exactly the root-sum-square of the dropped
singular values. Component i (u_i, s_i, v_i) is split between the factors as

    A'_i = a_i v_i^T,  B'_i = u_i s_i / a_i,  a_i = max(sqrt(s_i), c):

balanced (sqrt(s_i) each, as in a plain SVD split) while s_i is large, but A's row never shorter
than c, the row norm of the adapter's initial A. A direction whose singular value is still near zero
then keeps learning the way a fresh LoRA does (A a unit-scale direction, B near zero and learning);
a plain balanced split would leave both factors near zero there, where their gradients vanish.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Refactorised:
    """B' (out x rank) and A' (rank x in) with B' @ A' the truncated SVD of B @ A, and the
    singular values of B @ A that were kept and dropped."""

    b: torch.Tensor
    a: torch.Tensor
    kept: torch.Tensor
    dropped: torch.Tensor


def refactorise(b: torch.Tensor, a: torch.Tensor, rank: int, a_row_norm: float = 1.0) -> Refactorised:
    """Truncated SVD of W = b @ a (float64) to `rank` components, split as described above
    (a_row_norm is c).

    If `rank` exceeds min(out, in) the extra rows of A' and columns of B' are zero."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if a_row_norm <= 0:
        raise ValueError("a_row_norm must be positive")
    w = b.double() @ a.double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = min(rank, s.numel())
    new_b = torch.zeros(w.shape[0], rank, dtype=torch.float64)
    new_a = torch.zeros(rank, w.shape[1], dtype=torch.float64)
    a_scale = torch.clamp(torch.sqrt(s[:k]), min=a_row_norm)
    new_b[:, :k] = u[:, :k] * (s[:k] / a_scale)
    new_a[:k, :] = vh[:k, :] * a_scale.unsqueeze(1)
    return Refactorised(new_b, new_a, s[:k].clone(), s[k:].clone())
