"""stable-baselines3 adapters."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

from loopwm.checks import check_positive_int, progress_disabled
from loopwm.errors import ConfigError, MissingError

SB3_ALGOS = ("ppo", "sac", "td3", "a2c", "ddpg", "dqn")
CONTINUOUS_ONLY = ("sac", "td3", "ddpg")  # need Box actions
DISCRETE_ONLY = ("dqn",)  # needs Discrete actions

Policy = Callable[[np.ndarray], np.ndarray]


def load_sb3_policy(
    path: str | os.PathLike,
    algo: str,
    env: gym.Env,
    *,
    deterministic: bool = False,
    device: str = "cpu",
    trusted: bool = False,
) -> Policy:
    """Load a saved stable-baselines3 model as a policy ``obs -> action`` for ``env``.

    SB3's zip format holds pickled Python objects, and unpickling a crafted file runs its
    code: loading is refused unless ``trusted`` (``--trust-policy`` on the command line)
    says the file is one you made or trust.

    Raises:
        ValueError: not ``trusted``, unknown algorithm, or spaces that differ from ``env``'s.
        FileNotFoundError: no file at ``path``.
    """
    import stable_baselines3 as sb3

    if not trusted:
        raise ConfigError(
            f"{path}: a stable-baselines3 zip holds pickled Python objects, and loading it "
            f"runs any code they carry; pass --trust-policy (trusted=True) only for a file "
            f"you made or trust"
        )
    algo = algo.lower()
    if algo not in SB3_ALGOS:
        raise ConfigError(f"unknown SB3 algorithm {algo!r}; choose from {SB3_ALGOS}")
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"no SB3 model at {path}")
    model = getattr(sb3, algo.upper()).load(str(path), device=device)
    if model.observation_space.shape != env.observation_space.shape:
        raise ConfigError(
            f"{path}: policy observations {model.observation_space.shape} do not match the "
            f"env's {env.observation_space.shape}"
        )
    same = (
        model.action_space == env.action_space
        if isinstance(env.action_space, gym.spaces.Discrete)
        else model.action_space.shape == env.action_space.shape
    )
    if not same:
        raise ConfigError(
            f"{path}: policy actions {model.action_space} do not match the env's {env.action_space}"
        )

    def policy(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=deterministic)
        return np.asarray(action)

    return policy


class SB3Actor:
    """A stable-baselines3 model with the acting half of loopwm's ``Agent`` protocol
    (``act``, ``reset``), so :func:`loopwm.agents.evaluate_agent` scores it exactly as it
    scores loopwm's agent (same episodes, same seeds)."""

    def __init__(self, model) -> None:
        self.model = model

    def act(self, obs: np.ndarray, *, explore: bool) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=not explore)
        return action

    def reset(self, envs: list[int] | None = None) -> None:
        """SB3's MLP policies keep no state between steps."""


def make_sb3_agent(algo: str, env: gym.Env, *, seed: int = 0, device: str = "cpu", **kwargs):
    """A stable-baselines3 agent with its default hyperparameters and an MLP policy (a
    CNN policy for image observations, see :func:`sb3_policy_name`)."""
    import stable_baselines3 as sb3

    algo = algo.lower()
    if algo not in SB3_ALGOS:
        raise ConfigError(f"unknown SB3 algorithm {algo!r}; choose from {SB3_ALGOS}")
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    if (discrete and algo in CONTINUOUS_ONLY) or (not discrete and algo in DISCRETE_ONLY):
        fits = [a for a in SB3_ALGOS if a not in (CONTINUOUS_ONLY if discrete else DISCRETE_ONLY)]
        raise ConfigError(
            f"SB3 {algo.upper()} cannot act in {env.action_space}; choose --algo from {fits}"
        )
    policy = sb3_policy_name(env.observation_space)
    return getattr(sb3, algo.upper())(policy, env, seed=seed, device=device, **kwargs)


def sb3_policy_name(space: gym.spaces.Space) -> str:
    """SB3's ``CnnPolicy`` for images its NatureCNN can read (uint8, at least 36x36, any
    number of stacked channels), else ``MlpPolicy``."""
    from stable_baselines3.common.preprocessing import is_image_space

    image = is_image_space(space, check_channels=False)
    return "CnnPolicy" if image and min(space.shape[:2]) >= 36 else "MlpPolicy"


class ProgressCallback(BaseCallback):
    """A tqdm bar of environment steps (SB3's own bar needs the rich package).

    Args:
        total: steps the bar counts to.
        desc: its label.
        progress: ``None`` shows it only on a terminal.
    """

    def __init__(self, total: int, desc: str, progress: bool | None = None) -> None:
        super().__init__()
        self.total, self.desc, self.progress = total, desc, progress

    def _on_training_start(self) -> None:
        disable = progress_disabled(self.progress)
        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", disable=disable)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def train_in_dream(
    checkpoint: str | os.PathLike,
    algo: str,
    steps: int,
    *,
    env_id: str | None = None,
    start_states: str | os.PathLike | None = None,
    eval_episodes: int = 10,
    seed: int = 0,
    uncertainty_penalty: float = 0.0,
    uncertainty_limit: float | None = None,
    uncertainty_halt: float | None = None,
    ensemble_step: str = "mean",
    episode_steps: int | None = None,
    termination: str = "threshold",
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    device: str = "cpu",
) -> dict:
    """Train an SB3 agent entirely inside the world model, then evaluate it in the dream
    and on the real environment.

    ``uncertainty_penalty``, ``uncertainty_limit``, ``uncertainty_halt`` and
    ``ensemble_step`` (ensemble models only) are the :class:`~loopwm.envs.DreamEnv`
    options the agent trains under: rewards ``r - λ·u``, episodes truncated or terminated
    where the members disagree by more than the limit or the halt, and a random member's
    dynamics at each step.
    ``episode_steps`` truncates the training dream's episodes after that many imagined
    steps (MBPO-style short rollouts, with ``start_states`` branching from real data);
    the agent bootstraps at the cut. Default: the real env's episode length.
    After the scores, the model is checked along the agent's real episodes
    (:func:`~loopwm.agents.honesty.model_honesty`): its 1-step error there, and with an
    ensemble whether its disagreement saw that error coming.
    ``termination`` is the dream's rule for ending episodes
    (:class:`~loopwm.envs.DreamEnv`'s ``"threshold"`` or ``"sample"``), in training and
    in both dream scores.

    Returns:
        ``{"dream_return": (mean, std), "real_return": (mean, std), ...}``, where
        ``dream_return`` is scored in the dream the agent trained in and
        ``dream_return_raw`` in the same model without penalty, limit, halt, random
        members or shortened episodes (whole episodes, as the real return is scored);
        with ``out``,
        the agent is saved to ``out/agent.zip`` and the figures to ``out/dream.json``.
    """
    import json

    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from loopwm.agents.honesty import Transitions, model_honesty
    from loopwm.envs.dream import make_dream_env
    from loopwm.envs.spaces import make_env

    check_positive_int("steps", steps)
    check_positive_int("eval_episodes", eval_episodes)
    options = {
        "uncertainty_penalty": uncertainty_penalty,
        "uncertainty_limit": uncertainty_limit,
        "uncertainty_halt": uncertainty_halt,
        "ensemble_step": ensemble_step,
    }
    dream = Monitor(
        make_dream_env(
            checkpoint,
            episode_steps,
            env_id=env_id,
            start_states=start_states,
            termination=termination,
            device=device,
            **options,
        )
    )
    env_id = dream.unwrapped.core.env_id
    action_repeat = dream.unwrapped.core.action_repeat  # the real env repeats as the data did
    agent = make_sb3_agent(algo, dream, seed=seed, device=device)
    agent.learn(steps, callback=ProgressCallback(steps, f"{algo} in dream", progress))
    dream.reset(seed=seed + 10_000)
    dream_seen = Transitions()
    dream_mean, dream_std = evaluate_policy(
        agent, dream, n_eval_episodes=eval_episodes, callback=dream_seen
    )
    raw = Monitor(
        make_dream_env(
            checkpoint,
            env_id=env_id,
            start_states=start_states,
            termination=termination,
            device=device,
        )
    )
    raw.reset(seed=seed + 10_000)
    raw_mean, raw_std = evaluate_policy(agent, raw, n_eval_episodes=eval_episodes)
    raw.close()
    real = Monitor(make_env(env_id, action_repeat=action_repeat))
    real.reset(seed=seed + 20_000)
    real_seen = Transitions()
    real_mean, real_std = evaluate_policy(
        agent, real, n_eval_episodes=eval_episodes, callback=real_seen
    )
    core = dream.unwrapped.core
    honesty = model_honesty(core.model, core.actions, real_seen, dream_seen)
    result = {
        "env_id": env_id,
        "action_repeat": action_repeat,
        "algo": algo,
        "dream_steps": steps,
        "seed": seed,
        "eval_episodes": eval_episodes,
        **options,
        "episode_steps": episode_steps,
        "termination": termination,
        "dream_return": [float(dream_mean), float(dream_std)],
        "dream_return_raw": [float(raw_mean), float(raw_std)],
        "real_return": [float(real_mean), float(real_std)],
        "honesty": honesty,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        agent.save(out / "agent.zip")
        (out / "dream.json").write_text(json.dumps(result, indent=2))
    dream.close()
    real.close()
    return result
