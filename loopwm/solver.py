"""The loop around one iteration: fixed-point solving with per-sample halting.

An iteration is any ``f(x, inject) -> x_next`` on a batch. :func:`solve` applies it until
each sample's ``stop`` criterion holds or ``max_iters`` is reached; samples that stopped are
no longer updated and no longer computed (the active rows are gathered each iteration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from loopwm.errors import ConfigError

Iteration = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (new, old, residual) -> done (B,); residual is ||new - old|| per sample, computed once
StopRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Solution:
    """Result of :func:`solve` for a batch of ``B`` samples."""

    latent: torch.Tensor  # (B, D) last iterate x^K
    previous: torch.Tensor  # (B, D) iterate before it, x^{K-1}
    iters: torch.Tensor  # (B,) int64, K per sample
    residual: torch.Tensor  # (B,) ||x^K - x^{K-1}||


def certified_stop(contraction: float, tol: float) -> StopRule:
    """Stop when the a-posteriori Banach bound ``c/(1-c)*||x^k - x^{k-1}||`` is ``<= tol``.

    For a map with Lipschitz constant ``c < 1`` this bounds the distance of ``x^k`` to
    the unique fixed point.
    """
    if not 0.0 <= contraction < 1.0:
        raise ConfigError(
            f"certified halting needs a contraction factor in [0, 1), got {contraction}"
        )
    scale = contraction / (1.0 - contraction)

    def stop(new: torch.Tensor, old: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return scale * residual <= tol

    return stop


def solve(
    f: Iteration,
    x0: torch.Tensor,
    inject: torch.Tensor,
    *,
    max_iters: int,
    stop: StopRule | None,
) -> Solution:
    """Iterate ``x <- f(x, inject)`` from ``x0`` with per-sample halting.

    Args:
        f: one iteration, applied to any subset of rows of ``x`` and ``inject``.
        x0: (B, D) warm start (never written to).
        inject: (B, E) per-sample input, constant across iterations.
        max_iters: iteration cap (at least 1).
        stop: per-sample halting rule, or ``None`` to run exactly ``max_iters``.

    Returns:
        A :class:`Solution`; each sample ran between 1 and ``max_iters`` iterations.
    """
    if max_iters < 1:
        raise ConfigError(f"max_iters must be >= 1, got {max_iters}")
    if x0.ndim > 2:
        return _solve_masked(f, x0, inject, max_iters=max_iters, stop=stop)
    # While every row is active (usually most iterations) nothing is gathered or written
    # in place, and the count is kept here: a few tensor operations per iteration fewer,
    # on the hottest loop of imagination.
    x = previous = x0
    count, done = 0, None
    while count < max_iters:
        previous, x = x, f(x, inject)
        count += 1
        if stop is not None:
            residual = torch.linalg.vector_norm(x - previous, dim=-1)
            done = stop(x, previous, residual)
            if done.any():
                break
    if stop is None:  # no rule reads the residual: only the last one is computed
        residual = torch.linalg.vector_norm(x - previous, dim=-1)
    iters = torch.full(x0.shape[:1], count, dtype=torch.long, device=x0.device)
    if done is None or count == max_iters or bool(done.all()):
        return Solution(latent=x, previous=previous, iters=iters, residual=residual)
    # Some rows stopped: from here on only the active rows are gathered and computed.
    x, previous = x.clone(), previous.clone()
    active = torch.nonzero(~done).squeeze(-1)
    while count < max_iters and active.numel() > 0:
        x_old, inj = x[active], inject[active]
        x_new = f(x_old, inj)
        step = torch.linalg.vector_norm(x_new - x_old, dim=-1)
        residual[active] = step
        previous[active] = x_old
        x[active] = x_new
        iters[active] += 1
        active = active[~stop(x_new, x_old, step)]
        count += 1
    return Solution(latent=x, previous=previous, iters=iters, residual=residual)


def _solve_masked(
    f: Iteration, x0: torch.Tensor, inject: torch.Tensor, *, max_iters: int, stop: StopRule | None
) -> Solution:
    """:func:`solve` for (K, B, D) latents, e.g. the members of an ensemble, whose rows
    cannot be gathered (each member has its own weights): every row is computed each
    iteration, and a halted row is frozen where it stopped, so each sample's result and
    count are those of per-sample halting."""
    x, previous = x0, x0
    iters = torch.zeros(x0.shape[:-1], dtype=torch.long, device=x0.device)
    done = torch.zeros(x0.shape[:-1], dtype=torch.bool, device=x0.device)
    for _ in range(max_iters):
        x_new = f(x, inject)
        active = ~done
        keep = active.unsqueeze(-1)
        previous = torch.where(keep, x, previous)
        x = torch.where(keep, x_new, x)
        iters += active
        if stop is not None:
            # frozen rows keep their last pair, so this is each row's last residual
            residual = torch.linalg.vector_norm(x - previous, dim=-1)
            done = done | stop(x, previous, residual)
            if bool(done.all()):
                break
    if stop is None:
        residual = torch.linalg.vector_norm(x - previous, dim=-1)
    return Solution(latent=x, previous=previous, iters=iters, residual=residual)


def sample_train_iters(mean: float, sigma: float, cap: int, generator=None) -> int:
    """Iteration count for one training batch: ``Poisson(LogNormal) + 1`` with mean ``mean``.

    The log-normal rate has mean ``mean - 1`` so that the count averages ``mean``
    (recurrent-depth training, arXiv 2502.05171); the count is clipped to ``[1, cap]``.
    """
    rate_mean = max(mean - 1.0, 1e-6)
    log_rate = torch.randn((), generator=generator) * sigma + (math.log(rate_mean) - sigma**2 / 2)
    count = int(torch.poisson(torch.exp(log_rate).reshape(1), generator=generator).item()) + 1
    return min(max(count, 1), cap)
