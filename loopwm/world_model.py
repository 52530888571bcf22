"""The interface every loopwm world model shares: encode, step, decode, imagine.

A world model maps an observation to a latent (``encode``), a latent and an action to the
next latent plus reward and continuation (``step``), and a latent back to an observation
(``decode``). Subclasses supply only ``_transition``: how ``(h, u) -> h_next`` is computed
from the injected input ``u = prelude(h, a)``. LoopWM iterates one certified block; the
baselines stack untied blocks, run a GRU cell, or loop an unconstrained block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from loopwm.config import LoopWMConfig
from loopwm.networks import mlp, symexp

ArrayLike = torch.Tensor | np.ndarray


@dataclass
class StepOutput:
    """One imagined transition for a batch of ``B`` samples."""

    latent: torch.Tensor  # (B, latent_dim) next latent h_{t+1}
    reward: torch.Tensor  # (B,) predicted reward of the transition
    cont: torch.Tensor  # (B,) predicted probability that the episode continues
    iters: torch.Tensor  # (B,) int64 loop iterations spent on each sample
    residual: torch.Tensor  # (B,) ||x^K - x^{K-1}|| at the last iteration


@dataclass
class Transition:
    """What a subclass's ``_transition`` returns."""

    latent: torch.Tensor  # (B, D)
    iters: torch.Tensor  # (B,) int64
    residual: torch.Tensor  # (B,)
    aux_loss: torch.Tensor | None = None  # extra training loss (e.g. a halting gate)


@dataclass
class Rollout:
    """An open-loop imagined rollout of ``T`` steps for ``B`` samples."""

    latent: torch.Tensor  # (B, T, D) latents h_1..h_T
    reward: torch.Tensor  # (B, T)
    cont: torch.Tensor  # (B, T)
    iters: torch.Tensor  # (B, T) int64
    residual: torch.Tensor  # (B, T)


class WorldModel(nn.Module):
    """Base class: encoder, prelude, decoder heads and input checks.

    Args:
        config: sizes and loop settings; ``obs_dim`` and ``action_dim`` come from the env.
    """

    kind: ClassVar[str] = ""
    looped: ClassVar[bool] = False

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__()
        if not isinstance(config, LoopWMConfig):
            raise TypeError(f"config must be a LoopWMConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.encoder = mlp(c.obs_dim, c.hidden_dim, c.latent_dim)
        self.decoder = mlp(c.latent_dim, c.hidden_dim, c.obs_dim)
        self.reward_head = mlp(c.latent_dim, c.hidden_dim, 1, layers=1)
        self.cont_head = mlp(c.latent_dim, c.hidden_dim, 1, layers=1)
        # The prelude ends in a LayerNorm without affine parameters: ||u|| <= sqrt(inject_dim)
        # for every input, which is what makes the latent-norm bound hold.
        self.prelude = nn.Sequential(
            mlp(c.latent_dim + c.action_dim, c.hidden_dim, c.inject_dim),
            nn.LayerNorm(c.inject_dim, elementwise_affine=False),
        )
        self.register_buffer("obs_mean", torch.zeros(c.obs_dim))
        self.register_buffer("obs_std", torch.ones(c.obs_dim))

    # ------------------------------------------------------------------ public verbs
    def encode(self, obs: ArrayLike) -> torch.Tensor:
        """Latent of a batch of observations: (B, obs_dim) -> (B, latent_dim)."""
        return self._encode(self._check(obs, self.config.obs_dim, "obs"))

    def decode(self, latent: ArrayLike) -> torch.Tensor:
        """Observation predicted from a latent: (B, latent_dim) -> (B, obs_dim)."""
        return self._decode(self._check(latent, self.config.latent_dim, "latent"))

    def reward(self, latent: ArrayLike) -> torch.Tensor:
        """Reward predicted for the transition that reached ``latent``: (B, D) -> (B,)."""
        return self._reward(self._check(latent, self.config.latent_dim, "latent"))

    def cont(self, latent: ArrayLike) -> torch.Tensor:
        """Probability that the episode continues after ``latent``: (B, D) -> (B,)."""
        return self._cont(self._check(latent, self.config.latent_dim, "latent"))

    def step(
        self,
        latent: ArrayLike,
        action: ArrayLike,
        *,
        tol: float | None = None,
        max_iters: int | None = None,
    ) -> StepOutput:
        """One imagined transition ``(h_t, a_t) -> h_{t+1}`` with reward and continuation.

        Args:
            latent: (B, latent_dim) current latents.
            action: (B, action_dim) actions.
            tol: halting tolerance for this call (defaults to ``config.tol``).
            max_iters: iteration cap for this call (defaults to ``config.max_iters``);
                raising it at test time spends more computation per transition.
        """
        latent = self._check(latent, self.config.latent_dim, "latent")
        action = self._check(action, self.config.action_dim, "action")
        if latent.shape[0] != action.shape[0]:
            raise ValueError(
                f"latent and action batch sizes differ: {latent.shape[0]} vs {action.shape[0]}"
            )
        tol, max_iters = self._loop_overrides(tol, max_iters)
        return self._step(latent, action, tol=tol, max_iters=max_iters)

    def imagine(
        self,
        latent: ArrayLike,
        actions: ArrayLike,
        *,
        tol: float | None = None,
        max_iters: int | None = None,
    ) -> Rollout:
        """Open-loop rollout from ``latent`` (B, D) under ``actions`` (B, T, action_dim)."""
        latent = self._check(latent, self.config.latent_dim, "latent")
        actions = self._as_tensor(actions, "actions")
        if actions.ndim != 3 or actions.shape[0] != latent.shape[0]:
            raise ValueError(
                f"actions must have shape (batch={latent.shape[0]}, T, "
                f"{self.config.action_dim}), got {tuple(actions.shape)}"
            )
        self._check(actions.reshape(-1, actions.shape[-1]), self.config.action_dim, "actions")
        tol, max_iters = self._loop_overrides(tol, max_iters)
        steps = []
        with self.reuse_weights():
            for t in range(actions.shape[1]):
                out = self._step(latent, actions[:, t], tol=tol, max_iters=max_iters)
                latent = out.latent
                steps.append(out)
        return Rollout(
            latent=torch.stack([s.latent for s in steps], 1),
            reward=torch.stack([s.reward for s in steps], 1),
            cont=torch.stack([s.cont for s in steps], 1),
            iters=torch.stack([s.iters for s in steps], 1),
            residual=torch.stack([s.residual for s in steps], 1),
        )

    def contraction_bound(self) -> float:
        """Certified contraction factor of the loop (looped models only)."""
        raise TypeError(f"the {self.kind!r} model has no loop, so no contraction bound")

    def set_obs_normalizer(self, mean: ArrayLike, std: ArrayLike) -> None:
        """Set the observation standardisation (from training data); saved with the model."""
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if mean.shape != (self.config.obs_dim,) or std.shape != (self.config.obs_dim,):
            raise ValueError(f"mean and std must have shape ({self.config.obs_dim},)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std <= 0).any():
            raise ValueError("mean must be finite and std finite and positive")
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @contextmanager
    def reuse_weights(self) -> Iterator[None]:
        """Compute per-call derived weights once for a block of transitions (no-op here)."""
        yield

    # ------------------------------------------------------------------ internals
    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder((obs - self.obs_mean) / self.obs_std)  # (B, D)

    def _decode_normalized(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)  # (B, obs_dim), standardised units

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self._decode_normalized(latent) * self.obs_std + self.obs_mean  # (B, obs_dim)

    def _reward_symlog(self, latent: torch.Tensor) -> torch.Tensor:
        return self.reward_head(latent).squeeze(-1)  # (B,)

    def _cont_logit(self, latent: torch.Tensor) -> torch.Tensor:
        return self.cont_head(latent).squeeze(-1)  # (B,)

    def _reward(self, latent: torch.Tensor) -> torch.Tensor:
        return symexp(self._reward_symlog(latent))

    def _cont(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._cont_logit(latent))

    def _inject(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.prelude(torch.cat([latent, action], dim=-1))  # (B, inject_dim)

    def _transition(
        self, latent: torch.Tensor, inject: torch.Tensor, *, tol: float, max_iters: int
    ) -> Transition:
        raise NotImplementedError

    def _step(
        self, latent: torch.Tensor, action: torch.Tensor, *, tol: float, max_iters: int
    ) -> StepOutput:
        tr = self._transition(latent, self._inject(latent, action), tol=tol, max_iters=max_iters)
        return StepOutput(
            latent=tr.latent,
            reward=self._reward(tr.latent),
            cont=self._cont(tr.latent),
            iters=tr.iters,
            residual=tr.residual,
        )

    def _loop_overrides(self, tol: float | None, max_iters: int | None) -> tuple[float, int]:
        tol = self.config.tol if tol is None else tol
        max_iters = self.config.max_iters if max_iters is None else max_iters
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
            raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
        return float(tol), max_iters

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.parameters())
        return p.device, p.dtype

    def _as_tensor(self, x: ArrayLike, name: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.floating):
                raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
            x = torch.from_numpy(x)
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        device, dtype = self._device_dtype()
        return x.to(device=device, dtype=dtype)

    def _check(self, x: ArrayLike, dim: int, name: str) -> torch.Tensor:
        """Validate a (B, dim) float input at the public boundary and move it to the model."""
        x = self._as_tensor(x, name)
        if x.ndim != 2 or x.shape[1] != dim:
            hint = f" (for a single sample use {name}[None])" if x.ndim == 1 else ""
            raise ValueError(f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}{hint}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
        return x
