"""LoopWM: one shared block iterated to a certified fixed point per transition."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from loopwm.block import BlockWeights, LoopBlock
from loopwm.config import LoopWMConfig
from loopwm.solver import StopRule, certified_stop, sample_train_iters, solve
from loopwm.world_model import Transition, WorldModel


class LoopWM(WorldModel):
    """Looped world model: encoder -> ONE shared block iterated to convergence -> heads.

    Each transition solves ``x = A*x + B u + R(x, u)`` with ``u = prelude(h_t, a_t)``,
    warm-started at ``x^0 = h_t``. The block is a certified contraction
    (:meth:`contraction_bound` ``<= config.c_max < 1``), so the fixed point is unique, every
    sample halts once its certified distance to it is below ``tol``, and imagined latents
    stay inside :meth:`latent_bound` for rollouts of any length.

    >>> import torch
    >>> from loopwm import LoopWM, LoopWMConfig
    >>> model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1)).eval()
    >>> out = model.step(model.encode(torch.zeros(2, 4)), torch.zeros(2, 1))
    >>> out.latent.shape, out.iters.shape, model.contraction_bound() < 1
    (torch.Size([2, 16]), torch.Size([2]), True)
    """

    kind = "loopwm"
    looped = True
    certified = True

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.block = LoopBlock(config, certified=self.certified)

    def contraction_bound(self) -> float:
        """``c = max(A) + prod ||W_i||_2`` over the block's x-path, from exact SVDs (float64).

        Always ``<= config.c_max < 1`` for LoopWM, whatever the parameters.
        """
        return self.block.certificate()[0]

    def latent_bound(self, start_norm: float = 0.0) -> float:
        """Bound on ``||h||`` for every latent of an imagined rollout of any length whose
        start latent has norm ``start_norm``: ``max(start_norm, M / (1 - c))``."""
        contraction, drive = self.block.certificate()
        if contraction >= 1.0:
            return math.inf
        return max(float(start_norm), drive / (1.0 - contraction))

    @contextmanager
    def reuse_weights(self) -> Iterator[None]:
        with self.block.shared_weights():
            yield

    def _stop_rule(self, weights: BlockWeights, tol: float) -> StopRule | None:
        if self.config.halting == "fixed":
            return None
        return certified_stop(weights.contraction, tol)

    def _aux_loss(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor | None:
        """Extra training loss on the tracked ``(x^{k-1}, x^k)`` pairs (none for LoopWM)."""
        return None

    def _transition(
        self, latent: torch.Tensor, inject: torch.Tensor, *, tol: float, max_iters: int
    ) -> Transition:
        w = self.block.weights()
        projected = self.block.project(inject, w)  # (B, D + H), loop-invariant
        f = partial(self.block.iterate, w)
        cfg = self.config
        if self.training and (cfg.grad_mode == "truncated" or cfg.halting == "fixed"):
            # A count sampled per batch (or the fixed count); gradients through the last
            # grad_iters iterations only.
            if cfg.halting == "fixed":
                total = max_iters
            else:
                cap = max(max_iters, math.ceil(4 * cfg.train_iters_mean))
                total = sample_train_iters(cfg.train_iters_mean, cfg.train_iters_sigma, cap)
            tracked = min(cfg.grad_iters, total)
            start = latent
            if total > tracked:
                with torch.no_grad():
                    start = solve(f, latent, projected, max_iters=total - tracked, stop=None).latent
            done = torch.full((latent.shape[0],), total - tracked, device=latent.device)
        else:
            with torch.no_grad():
                sol = solve(f, latent, projected, max_iters=max_iters, stop=self._stop_rule(w, tol))
            if not torch.is_grad_enabled():
                return Transition(latent=sol.latent, iters=sol.iters, residual=sol.residual)
            # Phantom gradient: re-run the last iteration(s) from the solved point with
            # autograd on. With one tracked iteration this reproduces the solved latent.
            tracked = cfg.grad_iters if self.training else 1
            start, done = sol.previous, sol.iters - 1
        x = start
        pairs = []
        for _ in range(tracked):
            x_new = f(x, projected)
            pairs.append((x, x_new))
            x = x_new
        prev = pairs[-1][0]
        return Transition(
            latent=x,
            iters=(done + tracked).long(),
            residual=torch.linalg.vector_norm((x - prev).detach(), dim=-1),
            aux_loss=self._aux_loss(pairs) if self.training else None,
        )


class GatedLoopWM(LoopWM):
    """The LoopWM paper's variant: ``A = exp(-softplus)`` in (0, 1) is its only stability
    argument, ``R`` is unconstrained, and a learned gate decides when to halt.

    The gate sees ``[x^k, x^k - x^{k-1}]`` and is trained (detached from the dynamics) to
    predict that the relative latent change is below ``config.gate_tol``. At inference a
    sample halts once the gate's probability reaches ``config.gate_threshold``.
    """

    kind = "loopwm-gate"
    certified = False

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.gate = nn.Linear(2 * config.latent_dim, 1)

    def _gate_logit(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return self.gate(torch.cat([new, new - old], dim=-1)).squeeze(-1)  # (B,)

    def _stop_rule(self, weights: BlockWeights, tol: float) -> StopRule | None:
        if self.config.halting == "fixed":
            return None
        threshold = self.config.gate_threshold

        def stop(new, old, projected):
            return torch.sigmoid(self._gate_logit(new, old)) >= threshold

        return stop

    def _aux_loss(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        losses = []
        for old, new in pairs:
            old, new = old.detach(), new.detach()
            change = torch.linalg.vector_norm(new - old, dim=-1)
            scale = torch.linalg.vector_norm(new, dim=-1) + 1e-6
            label = (change / scale < self.config.gate_tol).float()
            losses.append(F.binary_cross_entropy_with_logits(self._gate_logit(new, old), label))
        return torch.stack(losses).mean()
