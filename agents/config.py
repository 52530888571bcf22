"""Frozen configuration of the Dreamer-style agent, its planner and its training loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from loopwm.checks import (
    check_choice,
    check_fraction,
    check_nonnegative_int,
    check_positive,
    check_positive_int,
)
from loopwm.config import PRESET_NAMES, FitConfig
from loopwm.envs.repeat import default_action_repeat
from loopwm.errors import ConfigError
from loopwm.models import MODEL_CHOICES

PLANNERS = ("none", "mppi", "cem")
ACTOR_GRADS = ("dynamics", "reinforce")


@dataclass(frozen=True)
class PlannerConfig:
    """Planning in imagination at action selection (TD-MPC2-style MPPI or CEM)."""

    kind: str = field(default="none", metadata={"choices": PLANNERS})
    """``none`` acts with the actor; ``mppi`` (score-weighted) or ``cem`` (elite mean)
    optimise an action sequence in the world model, seeded with actor samples."""
    horizon: int = 5
    """Imagined steps per candidate sequence (the critic scores the last latent)."""
    iterations: int = 3
    """Refinements of the sampling distribution per action."""
    samples: int = 128
    """Gaussian candidate sequences per iteration."""
    policy_samples: int = 16
    """Candidate sequences drawn from the actor (included in every iteration)."""
    elites: int = 16
    """Best candidates the distribution is refitted to."""
    temperature: float = 0.5
    """MPPI weights ``exp((G - max G) / (temperature * std G))`` over the elites."""
    min_std: float = 0.05
    """Lower bound of the sampling std (actions in [-1, 1] units)."""
    max_std: float = 1.0
    """Initial sampling std."""

    def __post_init__(self) -> None:
        check_choice("planner", self.kind, PLANNERS)
        for name in ("horizon", "iterations", "samples", "elites"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative_int("policy_samples", self.policy_samples)
        if self.elites > self.samples + self.policy_samples:
            raise ConfigError("elites must not exceed samples + policy_samples")
        for name in ("temperature", "min_std", "max_std"):
            check_positive(name, getattr(self, name))
        if self.min_std > self.max_std:
            raise ConfigError(f"min_std {self.min_std} exceeds max_std {self.max_std}")


def _default_model_overrides() -> dict[str, Any]:
    return {"obs_symlog": True}


def _default_model_fit() -> FitConfig:
    return FitConfig(batch_size=32, horizon=8, lr=1e-3)


@dataclass(frozen=True)
class DreamerConfig:
    """The agent: world model, actor-critic learned in imagination, and planner."""

    model: str = field(default="loopwm", metadata={"choices": MODEL_CHOICES})
    """World model kind (``loopwm`` or a baseline name from ``loopwm.MODEL_NAMES``)."""
    preset: str = field(default="small", metadata={"choices": PRESET_NAMES})
    """World-model size preset."""
    model_overrides: dict[str, Any] = field(default_factory=_default_model_overrides)
    """``LoopWMConfig`` fields to override (e.g. ``{"c_max": 0.95}``). The default,
    ``{"obs_symlog": True}``, squashes the standardised observations with symlog: on
    InvertedPendulum-v5 the agent solves in fewer real steps with it, on CartPole-v1
    more of its seeds solve (``benchmarks/solve_ab.py``). A dict given here replaces
    the default; ``--wm.*`` flags are laid over it."""
    model_fit: FitConfig = field(default_factory=_default_model_fit)
    """Batch size, training horizon, learning rate and loss weights of world-model updates."""

    horizon: int = 15
    """Imagination horizon of actor-critic updates (environment steps). 40 solves
    CartPole-v1 on 5 of 5 seeds against 4 of 5, at 2.2x the cost of an update
    (``benchmarks/solve_ab.py``): its agent must see a manoeuvre's payoff tens of steps on."""
    imagine_batch: int = 128
    """Replayed real states each actor-critic update imagines from (128 and a width of
    128 solve InvertedPendulum-v5 in 0.66x the wall time of 256 and 256, at 1.3x the real
    steps, median of 6 seeds: ``benchmarks/solve_ab.py``)."""
    gamma: float = 0.99
    """Discount. DreamerV3's 0.997 solves CartPole-v1 on more seeds, ties on
    InvertedPendulum-v5 and Pendulum-v1 and is worse on HalfCheetah-v5
    (``benchmarks/solve_ab.py``)."""
    lam: float = 0.95
    """lambda of the lambda-returns."""
    hidden_dim: int = 128
    """Width of the actor and critic MLPs."""
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    grad_clip: float = 100.0
    """Global gradient-norm clip of actor and critic."""
    entropy_coef: float = 3e-4
    """Entropy bonus on normalised returns (DreamerV3's eta)."""
    actor_grad: str = field(default="dynamics", metadata={"choices": ACTOR_GRADS})
    """``dynamics``: backpropagate returns through the imagined transitions (the world
    model is differentiable and deterministic); ``reinforce``: score-function gradient with
    the critic as baseline, as DreamerV3 uses."""
    return_decay: float = 0.99
    """EMA decay of the return scale ``S = P95 - P5``; returns are divided by ``max(1, S)``."""
    slow_critic_decay: float = 0.98
    """EMA decay of the slow critic that bootstraps the lambda-returns."""
    slow_critic_reg: float = 1.0
    """Weight of the critic's regulariser towards the slow critic's predictions."""
    explore_std: float = 0.0
    """Extra Gaussian action noise while collecting (the actor samples already explore)."""
    uncertainty_penalty: float = 0.0
    """``λ``: imagined rewards become ``r - λ·u``, ``u`` the ensemble's disagreement
    (pessimism in imagination, as MOPO); needs ``model_overrides={"ensemble": K >= 2}``."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Planning at action selection (``planner.kind="none"`` acts with the actor)."""

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODEL_CHOICES)
        check_choice("preset", self.preset, PRESET_NAMES)
        for name in ("horizon", "imagine_batch", "hidden_dim"):
            check_positive_int(name, getattr(self, name))
        for name in ("actor_lr", "critic_lr", "grad_clip"):
            check_positive(name, getattr(self, name))
        for name in ("gamma", "lam", "return_decay", "slow_critic_decay"):
            check_fraction(name, getattr(self, name))
        for name in ("entropy_coef", "slow_critic_reg", "explore_std", "uncertainty_penalty"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        check_choice("actor_grad", self.actor_grad, ACTOR_GRADS)

    def replace(self, **changes: Any) -> DreamerConfig:
        return dataclasses.replace(self, **changes)

    def with_model_overrides(self, overrides: dict[str, Any]) -> DreamerConfig:
        """This config with ``overrides`` laid over its world-model fields (the ones it
        does not name keep their values, the agent's defaults among them)."""
        if not overrides:
            return self
        return self.replace(model_overrides={**self.model_overrides, **overrides})


@dataclass(frozen=True)
class TrainConfig:
    """The online loop of ``loopwm train``: collect, store, train on a ratio, evaluate."""

    env_id: str = "InvertedPendulum-v5"
    """gymnasium id: flat Box or image observations (``pixels/<id>``, ``MinAtar/<Game>-v1``),
    Box or Discrete actions; ``dm_control/<domain>-<task>-v0`` with the ``dmc`` extra."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env's constructor (``gymnasium.make``), for training,
    evaluation and videos alike: e.g. ``{"frame_stack": 1}`` for a ``pixels/<id>`` env
    or ``{"ctrl_cost_weight": 0.05}`` for a MuJoCo locomotion env."""
    steps: int = 10_000
    """Real environment steps to collect (agent steps, each ``action_repeat`` env steps)."""
    num_envs: int = 1
    """Copies of the env stepped together (a gymnasium vector env); the agent acts for all
    of them in one batched forward pass. ``steps`` counts transitions of all copies."""
    async_envs: bool = False
    """Step the ``num_envs`` copies in subprocesses (for envs whose step is expensive)."""
    action_repeat: int | None = None
    """Env steps per agent step: each action is applied this many times and the rewards
    summed. ``None``: 2 on ``dm_control/...`` ids (TD-MPC2's and DreamerV3's setting), 1 on
    every other env. ``steps``, ``prefill`` and ``eval_every`` count agent steps; an
    evaluation return is the env's own episode return."""
    prefill: int = 1000
    """Uniform-random steps before the agent acts and learns."""
    pretrain: int = 200
    """Updates run once when the prefill ends (the model starts from data, not noise)."""
    train_ratio: float = 0.5
    """Agent updates (world model + actor-critic) per real environment step."""
    eval_every: int = 500
    """Real steps between evaluations (deterministic policy on a separate env). Often
    enough that the threshold stop ends a solved run soon; an evaluation of a poor policy
    is short, of a good one about 3 s per 5,000 env steps."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    stop_at_threshold: bool = True
    """End the run at the first evaluation whose mean return reaches the reward threshold
    (SB3's StopTrainingOnRewardThreshold); a run without a threshold uses all its steps."""
    reward_threshold: float | None = None
    """The threshold for ``stop_at_threshold``; ``None``: the env spec's
    ``reward_threshold`` (950 for InvertedPendulum-v5; none for many envs)."""
    checkpoint_every: int = 1000
    """Real steps between checkpoints (also written at the end)."""
    log_every: int = 250
    """Real steps between TensorBoard writes of training metrics."""
    replay_capacity: int | None = None
    """Transitions kept in memory (all of them stay on disk); ``None``: 1,000,000, or as
    many as 8 GiB hold where that is fewer (about 116,000 transitions of 64x64 frames,
    three stacked; any state observation fits 1,000,000)."""
    seed: int = 0
    """Seed of the env, the networks and every sampler."""
    agent: DreamerConfig = field(default_factory=DreamerConfig)
    """The agent's configuration."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_kwargs, dict) or not all(
            isinstance(key, str) for key in self.env_kwargs
        ):
            raise ConfigError(
                f"env_kwargs must be a dict of keyword arguments, got {self.env_kwargs!r}"
            )
        if reserved := sorted(set(self.env_kwargs) & {"action_repeat", "render_mode"}):
            raise ConfigError(
                f"env_kwargs cannot set {', '.join(reserved)}: the run sets it (use "
                f"--action-repeat for the action repeat)"
            )
        for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative_int("pretrain", self.pretrain)
        if self.action_repeat is not None:
            check_positive_int("action_repeat", self.action_repeat)
        if check_nonnegative_int("prefill", self.prefill) < 1:
            raise ConfigError("prefill must be >= 1: the model needs data before it learns")
        check_positive("train_ratio", self.train_ratio)
        if self.replay_capacity is not None:
            check_positive_int("replay_capacity", self.replay_capacity)
        if check_positive_int("num_envs", self.num_envs) > 1 and self.steps % self.num_envs:
            raise ConfigError(
                f"steps ({self.steps}) must be a multiple of num_envs ({self.num_envs}): "
                f"each step of the vector env stores one transition per env"
            )

    @property
    def repeat(self) -> int:
        """The env steps each agent step spans: ``action_repeat``, or the env's default."""
        if self.action_repeat is not None:
            return self.action_repeat
        return default_action_repeat(self.env_id)

    def make_env(self, **kwargs: Any) -> gym.Env:
        """The run's env: ``env_id`` made with ``env_kwargs`` (and ``kwargs``), applying
        each action ``repeat`` times."""
        from loopwm.envs.spaces import make_env

        return make_env(self.env_id, action_repeat=self.repeat, **self.env_kwargs, **kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output, rejecting unknown keys at every level."""
        data = dict(data)
        agent = dict(data.pop("agent", {}))
        planner = PlannerConfig(**_known(PlannerConfig, agent.pop("planner", {})))
        model_fit = FitConfig(**_known(FitConfig, agent.pop("model_fit", {})))
        agent = DreamerConfig(planner=planner, model_fit=model_fit, **_known(DreamerConfig, agent))
        return cls(agent=agent, **_known(cls, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
    return data
