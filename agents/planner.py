"""Planning in imagination: MPPI or CEM over action sequences in the world model.

As in TD-MPC2, candidate sequences come from a Gaussian around the previous step's plan
(shifted by one step) and from the actor itself; each is imagined ``horizon`` steps in the
world model and scored by its discounted predicted rewards plus the critic's value of the
last latent, discounted by the predicted continuation. The sampling distribution is
refitted to the best ``elites`` candidates, weighted by score (MPPI) or uniformly (CEM).
Actions live in ``[-1, 1]`` units; the agent maps them to the env's bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from loopwm.agents.config import PlannerConfig
from loopwm.errors import ConfigError
from loopwm.world_model import WorldModel

Sampler = Callable[[torch.Tensor], torch.Tensor]  # latent (B, D) -> action (B, A) in [-1, 1]
Value = Callable[[torch.Tensor], torch.Tensor]  # latent (B, D) -> value (B,)
ToEnv = Callable[[torch.Tensor], torch.Tensor]  # [-1, 1] actions -> env-scale actions


class LatentPlanner:
    """Plan one action at a time from an encoded observation.

    Args:
        config: planner settings (``config.kind`` is ``mppi`` or ``cem``).
        world_model: the model to imagine in.
        policy: the actor's sampler, which seeds ``policy_samples`` candidates.
        value: the critic, scoring the last imagined latent.
        to_env: maps ``[-1, 1]`` actions to the env's action bounds.
        gamma: discount.
    """

    def __init__(
        self,
        config: PlannerConfig,
        world_model: WorldModel,
        policy: Sampler,
        value: Value,
        to_env: ToEnv,
        gamma: float,
    ) -> None:
        if config.kind not in ("mppi", "cem"):
            raise ConfigError(f"LatentPlanner plans with mppi or cem, got {config.kind!r}")
        self.config = config
        self.world_model = world_model
        self.policy = policy
        self.value = value
        self.to_env = to_env
        self.gamma = gamma
        self.action_dim = world_model.config.action_dim
        self.previous_plan: torch.Tensor | None = None  # (H, A) mean of the last plan

    def reset(self) -> None:
        """Forget the previous plan (call at the start of an episode)."""
        self.previous_plan = None

    @torch.no_grad()
    def plan(
        self, latent: torch.Tensor, *, explore: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Best first action (A,) in ``[-1, 1]`` for one latent (1, D)."""
        cfg = self.config
        horizon, dim = cfg.horizon, self.action_dim
        device, dtype = latent.device, latent.dtype
        candidates = [self._policy_sequences(latent)] if cfg.policy_samples else []
        mean = torch.zeros(horizon, dim, device=device, dtype=dtype)
        if self.previous_plan is not None:
            mean[:-1] = self.previous_plan[1:]  # warm start: the previous plan, one step on
        std = torch.full((horizon, dim), cfg.max_std, device=device, dtype=dtype)
        for _ in range(cfg.iterations):
            noise = torch.randn(cfg.samples, horizon, dim, generator=generator, dtype=dtype)
            gaussian = (mean + std * noise.to(device)).clamp(-1.0, 1.0)  # (N, H, A)
            actions = torch.cat([gaussian, *candidates])  # (N + P, H, A)
            score = self.score(latent, actions)  # (N + P,)
            elite_score, elite = torch.topk(score, cfg.elites)
            elite_actions = actions[elite]  # (K, H, A)
            if cfg.kind == "mppi":
                spread = elite_score.std(unbiased=False).clamp_min(1e-6)
                weight = torch.softmax(
                    (elite_score - elite_score.max()) / (cfg.temperature * spread), 0
                )
            else:
                weight = torch.full_like(elite_score, 1.0 / cfg.elites)
            weight = weight[:, None, None]  # (K, 1, 1)
            mean = (weight * elite_actions).sum(0)  # (H, A)
            var = (weight * (elite_actions - mean).pow(2)).sum(0)
            std = var.sqrt().clamp(cfg.min_std, cfg.max_std)
        self.previous_plan = mean
        action = mean[0]
        if explore:
            noise = torch.randn(dim, generator=generator, dtype=dtype).to(device)
            action = action + std[0] * noise
        return action.clamp(-1.0, 1.0)

    def score(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Discounted predicted return of each sequence ``actions`` (M, H, A) from ``latent``
        (1, D), bootstrapped with the critic and weighted by predicted continuation:
        ``sum_t gamma^t (prod_{s<t} c_s) r_t + gamma^H (prod_s c_s) V(h_H)``."""
        count = actions.shape[0]
        rollout = self.world_model.imagine(latent.expand(count, -1), self.to_env(actions))
        # discount[:, t] = gamma^t * c_0 ... c_{t-1}: the weight of step t's reward
        survival = torch.cumprod(self.gamma * rollout.cont, dim=1)  # (M, H)
        discount = torch.cat([torch.ones_like(survival[:, :1]), survival[:, :-1]], 1)
        return (discount * rollout.reward).sum(1) + survival[:, -1] * self.value(
            rollout.latent[:, -1]
        )

    def _policy_sequences(self, latent: torch.Tensor) -> torch.Tensor:
        """Action sequences (P, H, A) in ``[-1, 1]`` of the actor, imagined from ``latent``."""
        taken = []

        def policy(h: torch.Tensor) -> torch.Tensor:
            taken.append(self.policy(h))  # (P, A)
            return self.to_env(taken[-1])

        start = latent.expand(self.config.policy_samples, -1)
        self.world_model.imagine(start, policy=policy, horizon=self.config.horizon)
        return torch.stack(taken, 1)  # (P, H, A)
