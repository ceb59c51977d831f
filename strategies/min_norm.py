"""The min-norm point of the convex hull of gradients: MGDA's common descent direction.

    min_a || sum_i a_i g_i ||^2   s.t.  sum_i a_i = 1, a_i >= 0           (GBG paper, Eq. 11)

Sener and Koltun (2018): for two gradients the solution is closed-form; for more, Frank-Wolfe
with an exact line search (each step is the two-gradient problem between the current point and
the best vertex). Works on the Gram matrix M_ij = g_i . g_j only, in float64.
"""

from __future__ import annotations

import torch


def two_point_weight(m11: float, m12: float, m22: float) -> float:
    """gamma minimising ||gamma u + (1 - gamma) v||^2 given u.u, u.v, v.v, clipped to [0, 1]."""
    denominator = m11 + m22 - 2 * m12
    if denominator <= 1e-20:
        return 0.5
    return min(1.0, max(0.0, (m22 - m12) / denominator))


def min_norm_weights(gram: torch.Tensor, iterations: int = 1000, tolerance: float = 1e-10) -> torch.Tensor:
    """Weights a on the simplex minimising a^T M a (M the Gram matrix of the gradients)."""
    m = gram.double().cpu()
    n = m.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    if n == 2:
        gamma = two_point_weight(float(m[0, 0]), float(m[0, 1]), float(m[1, 1]))
        return torch.tensor([gamma, 1 - gamma], dtype=torch.float64)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(iterations):
        ma = m @ a
        t = int(torch.argmin(ma))
        current = float(a @ ma)  # ||u||^2, u = sum a_i g_i
        gamma = two_point_weight(current, float(ma[t]), float(m[t, t]))  # weight of u against g_t
        step = torch.zeros_like(a)
        step[t] = 1.0
        new = gamma * a + (1 - gamma) * step
        if float((new - a).abs().sum()) < tolerance:
            a = new
            break
        a = new
    return a
