"""Baselines behind the LoopWM interface: every claim about looping is a comparison.

- :class:`MLPWorldModel`: an untied stack of ``mlp_depth`` blocks of the same shape as the
  loop's block, each with its own parameters (depth stored, not looped).
- :class:`GRUWorldModel`: a GRU cell, the RSSM-style recurrent transition.

The LoopWM paper's variant (:class:`~loopwm.looped.GatedLoopWM`) lives beside LoopWM,
and the fixed-iteration ablation is LoopWM with ``halting="fixed"``.
"""

from __future__ import annotations

import torch
from torch import nn

from loopwm.block import LoopBlock
from loopwm.config import LoopWMConfig
from loopwm.world_model import Transition, WorldModel


class MLPWorldModel(WorldModel):
    """Untied stack: ``x <- A_k*x + B_k u + R_k(x, u)`` for ``k = 1..mlp_depth``, from ``h_t``."""

    kind = "mlp"

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.blocks = nn.ModuleList(
            LoopBlock(config, certified=False) for _ in range(config.mlp_depth)
        )

    def _transition(self, latent, inject, *, tol, max_iters) -> Transition:
        x = prev = latent
        for block in self.blocks:
            w = block.weights()
            prev, x = x, block.iterate(w, x, block.project(inject, w))
        iters = torch.full((x.shape[0],), len(self.blocks), dtype=torch.long, device=x.device)
        residual = torch.linalg.vector_norm((x - prev).detach(), dim=-1)
        return Transition(latent=x, iters=iters, residual=residual)


class GRUWorldModel(WorldModel):
    """Recurrent transition ``h_{t+1} = GRUCell(u, h_t)`` (one pass per step)."""

    kind = "gru"

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        self.cell = nn.GRUCell(config.inject_dim, config.latent_dim)

    def _transition(self, latent, inject, *, tol, max_iters) -> Transition:
        x = self.cell(inject, latent)
        iters = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        residual = torch.linalg.vector_norm((x - latent).detach(), dim=-1)
        return Transition(latent=x, iters=iters, residual=residual)
