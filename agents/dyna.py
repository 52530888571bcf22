"""Dyna / MBPO-style training of a stable-baselines3 off-policy agent with a LoopWM.

The agent acts in the real environment as usual. :class:`DynaCallback` copies every real
transition into its own store, (re)fits a world model on it every ``refit_every`` real
steps, and then rolls the agent's current policy out in the model from real start states
(short horizons, as MBPO does), adding the imagined transitions to the agent's replay
buffer. The agent's own update schedule (``train_freq``, ``gradient_steps``) is unchanged;
raise ``gradient_steps`` to spend the extra data.

>>> from stable_baselines3 import SAC                                  # doctest: +SKIP
>>> agent = SAC("MlpPolicy", "InvertedPendulum-v5", gradient_steps=2)  # doctest: +SKIP
>>> agent.learn(10_000, callback=DynaCallback("InvertedPendulum-v5"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from loopwm.checks import check_positive_int
from loopwm.config import FitConfig
from loopwm.envs.dream import check_uncertainty_options, options_needing_members
from loopwm.envs.spaces import check_spaces
from loopwm.errors import ConfigError, UnsupportedError
from loopwm.models import build_model, model_config
from loopwm.replay import Replay, TransitionColumns
from loopwm.training import WorldModelTrainer, set_obs_statistics


@dataclass(frozen=True)
class DynaConfig:
    """Schedule of model fitting and imagination inside :class:`DynaCallback`."""

    preset: str = "small"
    """World-model size preset."""
    warmup_steps: int = 1000
    """Real steps stored before the first fit."""
    refit_every: int = 250
    """Real steps between two refits (each followed by a round of imagination)."""
    first_fit_steps: int = 1000
    """Gradient steps of the first fit."""
    fit_steps: int = 150
    """Gradient steps of every later refit (the model keeps training, it is not rebuilt)."""
    rollouts: int = 400
    """Imagined rollouts per round, each from a uniformly drawn stored real state."""
    horizon: int = 5
    """Length of each imagined rollout (stops early where the model predicts termination)."""
    cont_threshold: float = 0.5
    """Imagined episodes end where the continuation probability falls below this."""
    ensemble: int = 1
    """Members of the world model's ensemble (2 or more to use the four options below)."""
    uncertainty_penalty: float = 0.0
    """``λ``: imagined rewards are ``r - λ·u``, ``u`` the members' disagreement (MOPO)."""
    uncertainty_limit: float | None = None
    """An imagined rollout stops before the first step whose ``u`` exceeds this (MBPO's
    trusted short rollouts); ``None``: never."""
    uncertainty_halt: float | None = None
    """An imagined episode *terminates* at the first step whose ``u`` exceeds this (that
    step kept, marked done: MOReL's absorbing HALT state); ``None``: never."""
    ensemble_step: str = "mean"
    """How a rollout follows an ensemble: ``"mean"``, the members' mean next latent, or
    ``"random"``, one member drawn per sample and step (PETS' TS1, MBPO)."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(batch_size=64, horizon=5))
    """Batch size, horizon and learning rate of the model fits."""

    def __post_init__(self) -> None:
        for name in (
            "warmup_steps",
            "refit_every",
            "first_fit_steps",
            "rollouts",
            "horizon",
            "ensemble",
        ):
            check_positive_int(name, getattr(self, name))
        options = (
            self.uncertainty_penalty,
            self.uncertainty_limit,
            self.uncertainty_halt,
            self.ensemble_step,
        )
        check_uncertainty_options(*options)
        if self.fit.loss_weights["obs"] == 0:
            raise ConfigError(
                "Dyna hands the agent decoded observations: its fit needs a decoder "
                "(loss_weights obs above 0)"
            )
        if self.ensemble == 1 and (asked := options_needing_members(*options)):
            raise ConfigError(f"{asked} ensemble >= 2 (one member has no disagreement to measure)")


class DynaCallback(BaseCallback):
    """Refit a world model on real data and feed imagined transitions to the agent.

    Args:
        config: the fitting and imagination schedule.
        model: ``loopwm`` or a baseline name (see ``loopwm.MODEL_NAMES``).
        seed: seeds the model's parameters and the choice of start states.
    """

    def __init__(
        self, config: DynaConfig | None = None, *, model: str = "loopwm", seed: int = 0
    ) -> None:
        super().__init__()
        self.config = config or DynaConfig()
        self.model_name = model
        self.seed = seed
        self.trainer: WorldModelTrainer | None = None
        self.imagined = 0  # transitions added to the agent's buffer
        self._store = TransitionColumns()
        self._episode = np.zeros(0, dtype=np.int64)
        self._next_episode = 0
        self._last_refit = 0
        self._rng = np.random.default_rng(seed)
        self.history: list[dict[str, float]] = []

    def _init_callback(self) -> None:

        if not hasattr(self.model, "replay_buffer"):
            raise UnsupportedError("DynaCallback needs an off-policy SB3 agent (SAC, TD3, DDPG)")
        if self.training_env.num_envs != 1:
            raise UnsupportedError(
                "DynaCallback supports agents with a single environment (n_envs=1)"
            )
        check_spaces(self.model.observation_space, self.model.action_space, "DynaCallback")
        if len(self.model.observation_space.shape) != 1:
            raise UnsupportedError(
                f"DynaCallback imagines flat observations for SB3's MLP policies, got "
                f"{self.model.observation_space}; for pixels use loopwm train (the agent)"
            )
        if not isinstance(self.model.action_space, gym.spaces.Box):
            raise UnsupportedError(
                f"DynaCallback imagines for agents with Box actions (SAC, TD3, DDPG), got "
                f"{self.model.action_space}"
            )
        self._episode = np.zeros(1, dtype=np.int64)
        self._next_episode = 1

    @property
    def real_transitions(self) -> int:
        return len(self._store)

    def _on_step(self) -> bool:
        new_obs, dones, infos = self.locals["new_obs"], self.locals["dones"], self.locals["infos"]
        actions, rewards = self.locals["actions"], self.locals["rewards"]
        last_obs = (
            self.model._last_original_obs if self.model._vec_normalize_env else self.model._last_obs
        )
        for i, done in enumerate(dones):
            truncated = bool(done and infos[i].get("TimeLimit.truncated", False))
            next_obs = infos[i]["terminal_observation"] if done else new_obs[i]
            self._store.append(
                last_obs[i],
                actions[i],
                rewards[i],
                next_obs,
                bool(done) and not truncated,
                truncated,
                self._episode[i],
            )
            if done:
                self._episode[i] = self._next_episode
                self._next_episode += 1
        cfg = self.config
        steps = self.num_timesteps
        if steps >= cfg.warmup_steps and steps - self._last_refit >= cfg.refit_every:
            self._last_refit = steps
            self._refit()
            self._imagine()
        return True

    def replay(self) -> Replay:
        """The real transitions stored so far, ordered by episode."""
        arrays = self._store.arrays()
        order = np.argsort(arrays["episode"], kind="stable")
        return Replay(**{k: v[order] for k, v in arrays.items()}, meta={})

    def _refit(self) -> None:
        replay = self.replay()
        if self.trainer is None:
            torch.manual_seed(self.seed)
            config = model_config(
                self.model_name,
                self.config.preset,
                obs_dim=replay.obs_dim,
                action_dim=replay.action_dim,
                overrides={"ensemble": self.config.ensemble},
            )
            world_model = build_model(self.model_name, config)
            set_obs_statistics(world_model, replay)
            self.trainer = WorldModelTrainer(world_model, self.config.fit)
            steps = self.config.first_fit_steps
        else:
            steps = self.config.fit_steps
        metrics = {}
        for _ in range(steps):
            metrics = self.trainer.train_step(replay)
        self.history.append({"real_steps": self.num_timesteps, **metrics})
        for key in ("wm/loss", "wm/obs_loss", "loop/iters_mean"):
            self.logger.record(f"dyna/{key.split('/')[-1]}", metrics[key])

    @torch.no_grad()
    def _imagine(self) -> None:
        cfg = self.config
        world_model = self.trainer.model.eval()
        agent = self.model
        store = self._store.data["obs"]  # real states acted from (never terminal ones)
        starts = self._rng.integers(0, len(store), size=cfg.rollouts)
        seen = [np.stack([store[i] for i in starts]).astype(np.float32)]  # (R, O) each
        device = world_model.device
        latent = world_model.encode(torch.as_tensor(seen[0], device=device))
        previous, taken, steps = None, [], []
        with world_model.reuse_weights():  # the block's weights once for the whole round
            for _ in range(cfg.horizon):
                action, _ = agent.predict(seen[-1], deterministic=False)  # env-scale (R, A)
                out = world_model.step(
                    latent,
                    torch.as_tensor(action, dtype=torch.float32, device=device),
                    previous=previous,
                )
                if cfg.ensemble_step == "random":
                    member = self._rng.integers(0, cfg.ensemble, cfg.rollouts)
                    out = out.follow(torch.as_tensor(member, device=device))
                previous, latent = latent, out.latent
                seen.append(world_model.decode(latent).cpu().numpy())
                taken.append(action)
                steps.append(out)
        observations = np.stack(seen, 1)  # (R, H + 1, O)
        cont = torch.stack([o.cont for o in steps], 1).cpu().numpy()  # (R, H)
        done = cont < cfg.cont_threshold
        actions = agent.policy.scale_action(np.stack(taken, 1))
        reward = torch.stack([o.reward for o in steps], 1).cpu().numpy()
        trusted = np.ones_like(done)
        if steps[0].uncertainty is not None:
            uncertainty = torch.stack([o.uncertainty for o in steps], 1).cpu().numpy()
            reward = reward - cfg.uncertainty_penalty * uncertainty
            if cfg.uncertainty_limit is not None:
                trusted = np.cumprod(uncertainty <= cfg.uncertainty_limit, 1).astype(bool)
            if cfg.uncertainty_halt is not None:
                done = done | (uncertainty > cfg.uncertainty_halt)
            self.logger.record("dyna/uncertainty", float(uncertainty.mean()))
        # An imagined episode ends at its first termination, predicted or halted (that
        # step included), and a rollout stops before its first step the members disagree
        # on too much (the limit).
        alive = np.cumprod(np.concatenate([np.ones_like(done[:, :1]), ~done[:, :-1]], 1), 1)
        alive = alive.astype(bool) & trusted
        for i, t in zip(*np.nonzero(alive), strict=True):
            agent.replay_buffer.add(
                observations[i, t : t + 1],
                observations[i, t + 1 : t + 2],
                actions[i, t : t + 1],
                reward[i, t : t + 1],
                done[i, t : t + 1],
                [{}],
            )
            self.imagined += 1
        self.logger.record("dyna/imagined", self.imagined)
        iters = torch.stack([o.iters for o in steps], 1)
        self.logger.record("dyna/loop_iters", float(iters.float().mean()))
