"""Baselines behind the LoopWM interface: every claim about looping is a comparison.

- :class:`MLPWorldModel`: an untied stack of ``mlp_depth`` blocks of the same shape as the
  loop's block, each with its own parameters (depth stored, not looped).
- :class:`GRUWorldModel`: a GRU cell, the RSSM-style recurrent transition.

The LoopWM paper's variant (:class:`~loopwm.looped.GatedLoopWM`) lives beside LoopWM,
and the fixed-iteration ablation is LoopWM with ``halting="fixed"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loopwm.block import LoopBlock
from loopwm.checks import check_positive_int
from loopwm.config import LoopWMConfig
from loopwm.registry import register_model
from loopwm.world_model import Transition, WorldModel


@dataclass(frozen=True)
class MLPConfig(LoopWMConfig):
    """The shared settings plus the depth of the untied stack."""

    PRESETS = {"tiny": {"mlp_depth": 4}}

    mlp_depth: int = 8
    """Number of untied blocks in the stack."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("mlp_depth", self.mlp_depth)


@register_model("mlp")
class MLPWorldModel(WorldModel):
    """Untied stack: ``x <- A_k*x + B_k u + R_k(x, u)`` for ``k = 1..mlp_depth``, from ``h_t``."""

    kind = "mlp"
    config_class = MLPConfig

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


@register_model("gru")
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
