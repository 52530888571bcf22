"""The learned world model as a gymnasium environment: single (DreamEnv) and batched
(DreamVectorEnv).

Observations and actions live in the *real* environment's spaces, so a policy trained in
the dream runs unchanged on the real environment. Each step is one imagined transition:
the observation is the decoded latent, the reward comes from the reward head, and the
episode terminates when the continuation head's probability falls below
``cont_threshold`` (or, with ``termination="sample"``, with probability ``1 - cont``).
Time limits are gymnasium's (``TimeLimit`` for :class:`DreamEnv`, a per-env step counter
in :class:`DreamVectorEnv`).

Actions outside the action space are **clipped** to it (as MuJoCo's own ``ctrlrange``
would); NaN, inf or wrongly shaped actions raise ``ValueError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from loopwm.checks import check_choice, check_nonnegative, check_positive, check_positive_int
from loopwm.envs.spaces import ActionCodec, ObsCodec, episode_limit, make_env
from loopwm.errors import CheckpointError, ConfigError, UnsupportedError
from loopwm.world_model import WorldModel

ModelSource = WorldModel | str | os.PathLike
TERMINATIONS = ("threshold", "sample")
ENSEMBLE_STEPS = ("mean", "random")
StartStates = np.ndarray | str | os.PathLike | None


class DreamCore:
    """What both dream envs share: the model, the real env's spaces, start states, and a
    batched imagined step.

    Args:
        model: a world model (moved to ``device`` and put in eval mode) or a checkpoint path.
        env_id: the real environment (default: the ``env_id`` stored in the checkpoint).
        action_repeat: env steps one imagined step spans (default: what the checkpoint
            records, from the dataset it was fitted on; 1 if it records none). The real env
            (start states, rendering) repeats each action as often, and the real time
            limit becomes ``ceil(max_episode_steps / action_repeat)`` imagined steps.
        start_states: where episodes start: ``None`` for the real env's ``reset``, an array
            of observations (N, obs_dim), or a dataset folder from ``loopwm collect``.
        termination: how an imagined episode ends: ``"threshold"`` when the predicted
            continuation probability is below ``cont_threshold``; ``"sample"`` with
            probability ``1 - cont`` at each step, drawn from the env's ``np_random`` (an
            unbiased draw from the model's own belief: a boundary it predicts at 0.8 ends 1
            episode in 5 there rather than none).
        cont_threshold: the ``"threshold"`` rule's probability.
        tol, max_iters: loop halting settings for every step (model defaults if ``None``).
        uncertainty_penalty: ``λ >= 0``; each reward becomes ``r - λ·u`` (MOPO), where
            ``u`` is the ensemble's disagreement about the next observation (``info``'s
            ``uncertainty``, in standard deviations of the training data). Needs a model
            with ``ensemble >= 2``.
        uncertainty_limit: truncate an episode once ``u`` exceeds this (``> 0``; MBPO-style
            short rollouts where the model is trusted); ``info["uncertainty_truncated"]``
            says so. ``None``: never. Needs a model with ``ensemble >= 2``.
        uncertainty_halt: *terminate* an episode once ``u`` exceeds this (``> 0``; MOReL's
            absorbing HALT state: nothing is earned after it, so an agent learns to stay
            where the members agree); ``info["uncertainty_halted"]`` says so. ``None``:
            never. Needs a model with ``ensemble >= 2``.
        ensemble_step: how an ensemble's next state is chosen: ``"mean"``, the members'
            mean latent with their mean reward and continuation; or ``"random"``, one
            member drawn per sample and step from ``np_random`` (PETS' and MBPO's
            trajectory sampling), so the dream's dynamics vary as much as its members do.
        render_mode: ``"rgb_array"`` renders imagined states with the real env's MuJoCo
            model, or an image model's decoded frames (``None``: no rendering).
    """

    def __init__(
        self,
        model: ModelSource,
        *,
        env_id: str | None = None,
        action_repeat: int | None = None,
        start_states: StartStates = None,
        termination: str = "threshold",
        cont_threshold: float = 0.5,
        tol: float | None = None,
        max_iters: int | None = None,
        uncertainty_penalty: float = 0.0,
        uncertainty_limit: float | None = None,
        uncertainty_halt: float | None = None,
        ensemble_step: str = "mean",
        render_mode: str | None = None,
        render_size: tuple[int, int] = (480, 480),
        device: str | torch.device = "cpu",
    ) -> None:
        from loopwm.checkpoint import load, recorded_action_repeat

        uncertainty_options = (uncertainty_penalty, uncertainty_limit, uncertainty_halt)
        check_uncertainty_options(*uncertainty_options, ensemble_step)
        check_choice("termination", termination, TERMINATIONS)
        if isinstance(model, WorldModel):
            self.model = model.to(device).eval()
        elif isinstance(model, (str, os.PathLike)):
            self.model = load(model, map_location=device)
        else:
            raise UnsupportedError(
                f"model must be a loopwm world model or a checkpoint path, got {model!r}"
            )
        self.model.require_decoder("a dream env (its observations)")
        extra = getattr(self.model, "checkpoint_extra", {}) or {}
        self.env_id = env_id or extra.get("env_id")
        if not self.env_id:
            raise ConfigError("env_id is required: the model does not record its environment")
        if not 0.0 <= cont_threshold <= 1.0:
            raise ConfigError(f"cont_threshold must be in [0, 1], got {cont_threshold}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        cfg = self.model.config
        # an image model's render() shows its decoded frames; a state model's renders the
        # imagined state with the real env's MuJoCo model
        self.image = bool(cfg.image_shape)
        if render_mode is not None and not self.image:
            from loopwm.envs.render import check_renderable

            check_renderable(self.env_id)
        width, height = render_size
        kwargs = (
            {"render_mode": "rgb_array", "width": width, "height": height}
            if render_mode and not self.image
            else {}
        )
        if action_repeat is None:
            action_repeat = recorded_action_repeat(self.model)
        self.action_repeat = check_positive_int("action_repeat", action_repeat)
        self.real_env = make_env(self.env_id, action_repeat=self.action_repeat, **kwargs)
        # make_env has checked the spaces: flat Box or image observations, Box or Discrete
        self.observations = ObsCodec(self.real_env.observation_space)
        obs_dim = self.observations.dim
        self.actions = ActionCodec(self.real_env.action_space)
        action_dim = self.actions.dim
        model_space = _describe(cfg.obs_dim, cfg.image_shape)
        env_space = _describe(obs_dim, self.observations.image_shape)
        if model_space != env_space or cfg.action_dim != action_dim:
            self.real_env.close()
            raise CheckpointError(
                f"the model was fitted on {model_space} with {cfg.action_dim}-dim actions, "
                f"but {self.env_id} has {env_space} ({self.real_env.observation_space}) "
                f"and {action_dim}-dim actions"
            )
        self.observation_space: spaces.Box = self.real_env.observation_space
        self.action_space: spaces.Box | spaces.Discrete = self.real_env.action_space
        limit = episode_limit(self.real_env)
        # the real limit counts env steps; an imagined step spans action_repeat of them
        self.max_episode_steps = -(-limit // self.action_repeat) if limit else None
        self.termination = termination
        self.cont_threshold = cont_threshold
        self.tol, self.max_iters = self.model.loop_settings(tol, max_iters)
        self.ensemble = cfg.ensemble
        asked = options_needing_members(*uncertainty_options, ensemble_step)
        if self.ensemble == 1 and asked:
            self.real_env.close()
            raise ConfigError(
                f"{asked} an ensemble world model (fit one with --wm.ensemble 5); this model "
                "has a single member"
            )
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.uncertainty_limit = uncertainty_limit
        self.uncertainty_halt = uncertainty_halt
        self.ensemble_step = ensemble_step
        self.start_states = _load_start_states(start_states, self.observations)
        self.render_mode = render_mode
        self.renderer = None
        if render_mode is not None and not self.image:
            from loopwm.envs.render import StateRenderer

            self.renderer = StateRenderer(self.real_env)
        self._device = next(self.model.parameters()).device
        self._dtype = next(self.model.parameters()).dtype

    def sample_start_obs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, *shape) start observations drawn with ``rng``, in the observation space's
        shape."""
        shape = self.observation_space.shape
        if self.start_states is not None:
            rows = self.start_states[rng.integers(0, len(self.start_states), size=n)]
            return rows.reshape(n, *shape)
        seeds = rng.integers(0, 2**31 - 1, size=n)
        return np.stack([self.real_env.reset(seed=int(s))[0] for s in seeds])

    @torch.no_grad()
    def encode(self, obs: np.ndarray) -> torch.Tensor:
        """Latents (n, D) of start observations (n, *shape); a start state too far from
        anything the model can represent (its latent overflows) is a clear error."""
        latent = self.model.encode(self.tensor(np.asarray(obs).reshape(len(obs), -1)))
        if not torch.isfinite(latent).all():
            worst = float(np.abs(np.asarray(obs, dtype=np.float64)).max())
            raise ConfigError(
                f"a start observation (largest value {worst:.3g}) encodes to a non-finite "
                f"latent: it lies far outside what the model can represent"
            )
        return latent

    @torch.no_grad()
    def step(
        self,
        latent: torch.Tensor,
        actions: np.ndarray,
        rng: np.random.Generator,
        previous: torch.Tensor | None = None,
    ) -> tuple:
        """Imagine one step for a batch of checked actions from ``latent`` (``previous``:
        the latents one step before it, which ``warm_start="extrapolate"`` starts the loop
        from): returns ``(latent, obs, reward,
        terminated, truncated, info)`` with numpy arrays for everything but the latent;
        ``info`` holds ``loop_iters``, ``residual`` and ``cont`` arrays, and with an
        ensemble ``uncertainty``, ``uncertainty_truncated`` and ``uncertainty_halted``.
        ``truncated`` is set only by ``uncertainty_limit`` (time limits belong to the
        envs). ``rng`` draws the ``"sample"`` termination and the ``"random"`` members."""
        out = self.model.step(
            latent, self.tensor(actions), previous=previous, tol=self.tol, max_iters=self.max_iters
        )
        if self.ensemble_step == "random":  # each sample follows one member this step
            out = out.follow(
                torch.as_tensor(rng.integers(0, self.ensemble, len(actions)), device=latent.device)
            )
        cont = out.cont.cpu().numpy().astype(np.float64)
        info = {
            "loop_iters": out.iters.cpu().numpy(),
            "residual": out.residual.cpu().numpy().astype(np.float64),
            "cont": cont,
        }
        reward = out.reward.cpu().numpy().astype(np.float64)
        if self.termination == "sample":
            terminated = rng.random(len(cont)) >= cont
        else:
            terminated = cont < self.cont_threshold
        truncated = np.zeros(len(reward), dtype=bool)
        if out.uncertainty is not None:
            uncertainty = out.uncertainty.cpu().numpy().astype(np.float64)
            reward = reward - self.uncertainty_penalty * uncertainty
            if self.uncertainty_limit is not None:
                truncated = uncertainty > self.uncertainty_limit
            halted = np.zeros(len(reward), dtype=bool)
            if self.uncertainty_halt is not None:
                halted = uncertainty > self.uncertainty_halt
            terminated = terminated | halted
            info["uncertainty"] = uncertainty
            info["uncertainty_truncated"] = truncated.copy()
            info["uncertainty_halted"] = halted
        return out.latent, self.decode(out.latent), reward, terminated, truncated, info

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """Observations (n, *shape) of latents (n, D), in the real env's space: clipped to
        its bounds (images: rounded to uint8 pixels)."""
        return self.observations.to_env(self.model.decode(latent).cpu().numpy())

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        """An array as a tensor on the model's device, in its dtype."""
        return torch.as_tensor(np.asarray(x), device=self._device, dtype=self._dtype)

    def close(self) -> None:
        self.real_env.close()


def _describe(obs_dim: int, image_shape: tuple) -> str:
    if image_shape:
        return "{}x{}x{} images".format(*image_shape)
    return f"{obs_dim}-dim observations"


def check_uncertainty_options(
    penalty: float, limit: float | None, halt: float | None, ensemble_step: str
) -> None:
    """The values of the ensemble options a dream and Dyna share, checked."""
    check_nonnegative("uncertainty_penalty", penalty)
    if limit is not None:
        check_positive("uncertainty_limit", limit)
    if halt is not None:
        check_positive("uncertainty_halt", halt)
    check_choice("ensemble_step", ensemble_step, ENSEMBLE_STEPS)


def options_needing_members(
    penalty: float, limit: float | None, halt: float | None, ensemble_step: str
) -> str | None:
    """``"uncertainty_halt and ensemble_step='random' need"``: the options asked that a
    single model cannot serve, as the start of an error message; ``None`` if none is."""
    asked = [
        name
        for name, on in (
            ("uncertainty_penalty", penalty > 0),
            ("uncertainty_limit", limit is not None),
            ("uncertainty_halt", halt is not None),
            ("ensemble_step='random'", ensemble_step == "random"),
        )
        if on
    ]
    if not asked:
        return None
    return f"{' and '.join(asked)} {'needs' if len(asked) == 1 else 'need'}"


def _load_start_states(start_states: StartStates, observations: ObsCodec) -> np.ndarray | None:
    """Start observations as flat rows (N, obs_dim): a dataset folder's, or an array of
    flat rows or of observations in the space's shape (N, *shape)."""
    if start_states is None:
        return None
    if isinstance(start_states, (str, os.PathLike)):
        from loopwm.replay import Replay

        # states the real env acted from: never a terminal state, where no episode goes on
        states = Replay.load(Path(start_states)).obs
    else:
        states = np.asarray(start_states, dtype=np.float64)
        if states.shape[1:] == observations.space.shape and states.ndim > 2:
            states = states.reshape(len(states), -1)  # images in the space's shape
    obs_dim = observations.dim
    if states.ndim != 2 or states.shape[1] != obs_dim or len(states) == 0:
        raise ConfigError(f"start_states must have shape (N>0, {obs_dim}), got {states.shape}")
    if not np.isfinite(states).all():
        raise ConfigError("start_states contain NaN or inf")
    return states


class DreamEnv(gym.Env):
    """A gymnasium environment whose transitions are the world model's imagination.

    Usually made through the registry (the checkpoint records its real env's id)::

        import gymnasium as gym, loopwm.envs
        env = gym.make("loopwm/Dream-v0", checkpoint="runs/fit/loopwm/model.safetensors")

    ``info`` of every step carries ``loop_iters`` (iterations the loop spent) and
    ``residual`` (its last ``||x^K - x^{K-1}||``), and ``cont`` (continuation probability);
    with an ensemble model also ``uncertainty`` (the members' disagreement about this
    observation, in standard deviations of the training data) and
    ``uncertainty_truncated``. See :class:`DreamCore` for the arguments.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, model: ModelSource, **kwargs: Any) -> None:
        super().__init__()
        self.core = DreamCore(model, **kwargs)
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = self.core.render_mode
        fps = self.core.real_env.metadata.get("render_fps", 30)
        if self.core.action_repeat > 1:  # real time: one frame per action_repeat env steps
            fps = fps / self.core.action_repeat
        self.metadata = {**self.metadata, "render_fps": fps}
        self._latent: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None  # the latent one step before
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.core.sample_start_obs(1, self.np_random)
        self._latent, self._previous = self.core.encode(obs), None
        self._obs = obs[0].astype(self.observation_space.dtype)
        if self.core.renderer is not None:
            self.core.renderer.reset(self._obs)
        return self._obs.copy(), {}

    def step(self, action):
        if self._latent is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = self.core.actions.check(action, 1)  # validated; clipped or one-hot
        latent, obs, reward, terminated, truncated, batch_info = self.core.step(
            self._latent, action, self.np_random, self._previous
        )
        self._previous, self._latent, self._obs = self._latent, latent, obs[0]
        if self.core.renderer is not None:
            self.core.renderer.advance(self._obs)
        info = {key: value[0].item() for key, value in batch_info.items()}
        return self._obs.copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        if self.core.image:
            return self.core.observations.frame(self._obs)  # the decoded image itself
        return self.core.renderer.render()

    def close(self):
        self.core.close()
        super().close()


def make_dream_env(
    checkpoint: ModelSource, episode_steps: int | None = None, **kwargs: Any
) -> gym.Env:
    """Entry point of ``loopwm/Dream-v0``: a :class:`DreamEnv` inside gymnasium's
    ``TimeLimit`` of ``episode_steps`` (default: the real environment's episode length).

    ``gymnasium.make`` keeps its own ``max_episode_steps`` argument and applies it in a
    second ``TimeLimit`` outside this one, so it can only shorten an episode; to make
    dream episodes longer than the real env's, pass ``episode_steps``."""
    if episode_steps is not None:
        check_positive_int("episode_steps", episode_steps)
    env = DreamEnv(checkpoint, **kwargs)
    limit = episode_steps or env.core.max_episode_steps
    return gym.wrappers.TimeLimit(env, limit) if limit else env


class DreamVectorEnv(VectorEnv):
    """``num_envs`` imagined environments stepped in one batched forward pass.

    Follows gymnasium 1.x next-step autoreset: the step after an episode ends returns that
    env's reset observation with zero reward. Truncation comes from a per-env step counter
    (``max_episode_steps``, default: the real env's) or ``uncertainty_limit``. ``infos``
    holds ``loop_iters``, ``residual`` and ``cont`` arrays (and ``uncertainty``,
    ``uncertainty_truncated`` with an ensemble).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        model: ModelSource,
        num_envs: int,
        *,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_positive_int("num_envs", num_envs)
        if kwargs.get("render_mode") is not None:
            raise ConfigError("DreamVectorEnv does not render; use DreamEnv for videos")
        self.core = DreamCore(model, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.max_episode_steps = max_episode_steps or self.core.max_episode_steps
        self.render_mode = None
        self._latent: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None  # one step before (a start: itself)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start every env. ``seed``: an int seeds the whole batch; a list of ``num_envs``
        ints seeds each env's start state with its own entry (as gymnasium's vector envs
        do), and the later autoresets with the whole list."""
        if isinstance(seed, list):
            if len(seed) != self.num_envs or not all(isinstance(s, int) for s in seed):
                raise ConfigError(f"seed must be an int or {self.num_envs} ints, got {seed!r}")
            self._np_random = np.random.default_rng(seed)
            self._np_random_seed = seed[0]
            obs = np.concatenate(
                [self.core.sample_start_obs(1, np.random.default_rng(s)) for s in seed]
            )
        else:
            if seed is not None:
                self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            obs = self.core.sample_start_obs(self.num_envs, self.np_random)
        self._latent = self._previous = self.core.encode(obs)
        self._steps[:] = 0
        self._needs_reset[:] = False
        return obs.astype(self.single_observation_space.dtype), {}

    def step(self, actions):
        if self._latent is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = self.core.actions.check(actions, self.num_envs)
        latent, obs, reward, terminated, truncated, batch_info = self.core.step(
            self._latent, actions, self.np_random, self._previous
        )
        previous = self._latent
        self._steps += 1
        if self.max_episode_steps:
            truncated |= self._steps >= self.max_episode_steps
        resetting = self._needs_reset
        if resetting.any():
            # next-step autoreset: these envs ended last step; this step is their reset
            start = self.core.sample_start_obs(int(resetting.sum()), self.np_random)
            rows = torch.as_tensor(resetting)
            latent[rows] = previous[rows] = self.core.encode(start)
            obs[resetting] = start
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
            batch_info["loop_iters"][resetting] = 0
            batch_info["residual"][resetting] = 0.0
            batch_info["cont"][resetting] = 1.0
            if "uncertainty" in batch_info:
                batch_info["uncertainty"][resetting] = 0.0
                batch_info["uncertainty_truncated"][resetting] = False
                batch_info["uncertainty_halted"][resetting] = False
            self._steps[resetting] = 0
        self._latent, self._previous = latent, previous
        self._needs_reset = terminated | truncated
        every = np.ones(self.num_envs, dtype=bool)
        infos = {**batch_info, **{f"_{key}": every for key in batch_info}}
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.core.close()


def make_dream_vector_env(
    checkpoint: ModelSource, num_envs: int = 1, **kwargs: Any
) -> DreamVectorEnv:
    """Vector entry point of ``loopwm/Dream-v0`` (``gymnasium.make_vec``)."""
    return DreamVectorEnv(checkpoint, num_envs, **kwargs)
