"""LoopWM: one shared block iterated to a certified fixed point per transition."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from loopwm.block import BlockWeights, make_block
from loopwm.checks import check_positive
from loopwm.config import LoopWMConfig
from loopwm.errors import ConfigError
from loopwm.registry import register_model
from loopwm.solver import Solution, StopRule, certified_stop, sample_train_iters, solve
from loopwm.world_model import Transition, WorldModel


@register_model(
    "loopwm-fixed",
    requires={"halting": "fixed"},
    # as many iterations as LoopWM trains with, unless told otherwise
    defaults=lambda config: {"max_iters": max(1, round(config.train_iters_mean))},
)
@register_model("loopwm")
class LoopWM(WorldModel):
    """Looped world model: encoder -> ONE shared block iterated to convergence -> heads.

    Each transition solves ``x = A*x + B u + R(x, u)`` with ``u = prelude(h_t, a_t)``,
    warm-started at ``x^0 = h_t`` (``config.warm_start``). The block is a certified contraction
    (:meth:`contraction_bound` ``<= config.c_max < 1``), so the fixed point is unique, every
    sample halts once its certified distance to it is below ``tol``, and imagined latents
    stay inside :meth:`latent_bound` for rollouts of any length.

    >>> import torch
    >>> from loopwm import LoopWM, LoopWMConfig
    >>> model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1)).eval()
    >>> out = model.step(model.encode(torch.zeros(2, 4)), torch.zeros(2, 1))
    >>> out.latent.shape, out.iters.shape, model.contraction_bound() < 1
    (torch.Size([2, 16]), torch.Size([2]), True)

    Registered as ``loopwm`` and as ``loopwm-fixed``, the ablation for adaptive compute:
    LoopWM with ``halting="fixed"``, which always runs ``max_iters`` iterations, in training
    too; unless set, ``max_iters`` is LoopWM's mean training count ``train_iters_mean``.
    """

    kind = "loopwm"
    looped = True
    certified = True
    reads_previous = True

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.block = make_block(config, certified=self.certified)

    def contraction_bound(self) -> float:
        """``c = max(A) + prod ||W_i||_2`` over the block's x-path, from exact SVDs (float64);
        the largest member's with an ensemble.

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
        self,
        latent: torch.Tensor,
        inject: torch.Tensor,
        *,
        tol: float,
        max_iters: int,
        previous: torch.Tensor | None = None,
    ) -> Transition:
        w = self.block.weights()
        projected = self.block.project(inject, w)  # (B, D + H) or (K, B, D + H), loop-invariant
        if self.config.warm_start == "linear":
            latent = self._linear_start(w, projected)
        elif self.config.warm_start == "extrapolate" and previous is not None:
            latent = 2.0 * latent - previous  # h_t moved on by its last step
        if latent.ndim == 2 and projected.ndim == 3:  # an ensemble: every member starts alike
            latent = latent.expand(projected.shape[0], *latent.shape)
        f = partial(self.block.iterate, w)
        if self.training and (
            self.config.grad_mode == "truncated" or self.config.halting == "fixed"
        ):
            return self._truncated(f, latent, projected, max_iters)
        with torch.no_grad():
            sol = solve(f, latent, projected, max_iters=max_iters, stop=self._stop_rule(w, tol))
        if not torch.is_grad_enabled():
            return Transition(latent=sol.latent, iters=sol.iters, residual=sol.residual)
        return self._phantom(f, sol, projected)

    @staticmethod
    def _linear_start(w: BlockWeights, projected: torch.Tensor) -> torch.Tensor:
        """The fixed point of ``x <- A*x + (B u + b)``, the block without ``R``."""
        decay = w.decay if projected.ndim == 2 else w.decay.unsqueeze(-2)
        return projected[..., : decay.shape[-1]] / (1.0 - decay)

    def _phantom(self, f, sol: Solution, projected: torch.Tensor) -> Transition:
        """Phantom gradient: re-run the last iteration(s) from the solved point with autograd
        on. With one tracked iteration (imagination) this reproduces the solved latent."""
        tracked = self.config.grad_iters if self.training else 1
        return self._track(f, sol.previous, projected, tracked, done=sol.iters - 1)

    def _truncated(self, f, latent: torch.Tensor, projected: torch.Tensor, max_iters: int):
        """Training with an iteration count sampled per batch (or the fixed count), with
        gradients through its last ``grad_iters`` iterations only."""
        cfg = self.config
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
        done = torch.full(latent.shape[:-1], total - tracked, device=latent.device)
        return self._track(f, start, projected, tracked, done=done)

    def _track(self, f, start, projected, tracked: int, *, done: torch.Tensor) -> Transition:
        """``tracked`` iterations from ``start`` with autograd on; ``done`` were run before."""
        x = start
        pairs = []
        for _ in range(tracked):
            x_new = f(x, projected)
            pairs.append((x, x_new))
            x = x_new
        return Transition(
            latent=x,
            iters=(done + tracked).long(),
            residual=torch.linalg.vector_norm((x - pairs[-1][0]).detach(), dim=-1),
            aux_loss=self._aux_loss(pairs) if self.training else None,
        )


@dataclass(frozen=True)
class GatedLoopWMConfig(LoopWMConfig):
    """LoopWM's settings plus the paper's halting gate."""

    gate_threshold: float = 0.5
    """Halting probability at which a sample stops."""
    gate_tol: float = 1e-2
    """Relative latent change the gate learns to call converged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("gate_tol", self.gate_tol)
        if not 0.0 < self.gate_threshold < 1.0:
            raise ConfigError(f"gate_threshold must be in (0, 1), got {self.gate_threshold}")


@register_model("loopwm-gate")
class GatedLoopWM(LoopWM):
    """The LoopWM paper's variant: ``A = exp(-softplus)`` in (0, 1) is its only stability
    argument, ``R`` is unconstrained, and a learned gate decides when to halt.

    The gate sees ``[x^k, x^k - x^{k-1}]`` and is trained (detached from the dynamics) to
    predict that the relative latent change is below ``config.gate_tol``. At inference a
    sample halts once the gate's probability reaches ``config.gate_threshold``.
    """

    kind = "loopwm-gate"
    certified = False
    config_class = GatedLoopWMConfig

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.gate = nn.Linear(2 * config.latent_dim, 1)

    def _gate_logit(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return self.gate(torch.cat([new, new - old], dim=-1)).squeeze(-1)  # (B,)

    def _stop_rule(self, weights: BlockWeights, tol: float) -> StopRule | None:
        if self.config.halting == "fixed":
            return None
        threshold = self.config.gate_threshold

        def stop(new, old, residual):
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
