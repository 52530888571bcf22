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

from loopwm.block import make_block
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
            make_block(config, certified=False) for _ in range(config.mlp_depth)
        )

    def _transition(self, latent, inject, *, tol, max_iters) -> Transition:
        x = prev = latent
        for block in self.blocks:
            w = block.weights()
            projected = block.project(inject, w)  # (B, D + H), or (K, B, D + H): an ensemble
            if projected.ndim > x.ndim:
                x = x.expand(projected.shape[0], *x.shape)
            prev, x = x, block.iterate(w, x, projected)
        iters = torch.full(x.shape[:-1], len(self.blocks), dtype=torch.long, device=x.device)
        residual = torch.linalg.vector_norm((x - prev).detach(), dim=-1)
        return Transition(latent=x, iters=iters, residual=residual)


@register_model("gru")
class GRUWorldModel(WorldModel):
    """Recurrent transition ``h_{t+1} = GRUCell(u, h_t)`` (one pass per step); with an
    ensemble, ``K`` cells run as one batched pass."""

    kind = "gru"

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__(config)
        if config.ensemble == 1:
            self.cell = nn.GRUCell(config.inject_dim, config.latent_dim)
        else:
            self.cells = nn.ModuleList(
                nn.GRUCell(config.inject_dim, config.latent_dim) for _ in range(config.ensemble)
            )

    def _transition(self, latent, inject, *, tol, max_iters) -> Transition:
        if self.config.ensemble == 1:
            x = self.cell(inject, latent)
        else:
            x = gru_ensemble(self.cells, inject, latent)
            latent = latent.expand_as(x)
        iters = torch.ones(x.shape[:-1], dtype=torch.long, device=x.device)
        residual = torch.linalg.vector_norm((x - latent).detach(), dim=-1)
        return Transition(latent=x, iters=iters, residual=residual)


def gru_ensemble(cells: nn.ModuleList, inject: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """``K`` GRU cells on the same (B, E) input and (B, D) state in one batched pass:
    (K, B, D), member ``k`` equal to ``cells[k](inject, latent)``."""

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([getattr(cell, name) for cell in cells])

    gi = torch.matmul(inject, stacked("weight_ih").mT) + stacked("bias_ih").unsqueeze(-2)
    gh = torch.matmul(latent, stacked("weight_hh").mT) + stacked("bias_hh").unsqueeze(-2)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)  # (K, B, D) each, PyTorch's gate order
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    reset = torch.sigmoid(i_r + h_r)
    update = torch.sigmoid(i_z + h_z)
    new = torch.tanh(i_n + reset * h_n)
    return (1.0 - update) * new + update * latent
