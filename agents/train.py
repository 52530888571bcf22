"""The online loop of ``loopwm train``: collect -> store -> train on a ratio -> log ->
evaluate -> checkpoint.

:class:`OnlineTrainer` runs any agent that follows :class:`Agent` and receives factories
for the env, the agent, the replay and the logger, so the loop runs unchanged on fakes in
tests. A run lives in one folder (see :mod:`loopwm.agents.run`); ``resume=True``
continues a killed run from its last checkpoint with every transition that reached the
disk. :func:`train` is the thin entry that wires the defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from loopwm.agents.config import TrainConfig
from loopwm.agents.dreamer import DreamerAgent
from loopwm.agents.run import (
    checkpoint_complete,
    load_checkpoint,
    read_config,
    remove_stale_temporaries,
    resume_config,
    save_checkpoint,
    write_config,
)
from loopwm.checks import check_positive_int, progress_disabled
from loopwm.envs.spaces import ActionCodec, ObsCodec, check_box_env, dataset_meta, make_env
from loopwm.errors import ConfigError, ExistsError, UnsupportedError
from loopwm.io import check_output_dir, write_json
from loopwm.online_replay import OnlineReplay
from loopwm.replay import Replay
from loopwm.summaries import TensorBoardLogger
from loopwm.video import log_open_loop_video

if TYPE_CHECKING:
    from loopwm.agents.honesty import Transitions


class Agent(Protocol):
    """What :class:`OnlineTrainer` needs of an agent (:class:`DreamerAgent` is one)."""

    updates: int  # updates done so far (restored by load_state_dict)
    world_model: Any  # the agent's world model (for videos and the loop's statistics)

    def act(self, obs: np.ndarray, *, explore: bool) -> np.ndarray:
        """An env-scale action (A,) for one observation (O,), or actions (N, A) for the
        observations (N, O) of N envs stepped together (the training loop always batches)."""

    def update(self, replay) -> dict[str, float]:
        """One learning step from the replay; returns slash-namespaced metrics."""

    def reset(self, envs: list[int] | None = None) -> None:
        """A new episode starts in the batch's envs ``envs`` (``None``: in every env)."""

    def evaluation(self) -> AbstractContextManager:
        """A context for whole evaluation episodes that leaves the training episode's
        acting state (e.g. a planner's warm start) as it found it."""

    def histograms(self) -> dict[str, np.ndarray]:
        """Arrays to log as histograms with the training metrics."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Counters:
    """Where a run stands; saved in every checkpoint."""

    env_steps: int = 0
    episodes: int = 0
    updates_owed: float = 0.0  # updates earned by real steps and not yet run
    wall_seconds: float = 0.0
    checkpoint_steps: int = 0  # env_steps at the last checkpoint
    stopped: str = ""  # why the run ended before its step budget ("reward_threshold")


class NullLogger:
    """A logger that drops everything (``--no-tensorboard``)."""

    def scalars(self, metrics, step) -> None: ...

    def histogram(self, tag, values, step) -> None: ...

    def video(self, tag, frames, step, fps: int = 10) -> None: ...

    def close(self) -> None: ...


def evaluate_agent(
    agent, env: gym.Env, episodes: int, *, seed: int, transitions: Transitions | None = None
) -> list[float]:
    """Returns of ``episodes`` episodes of the agent's greedy policy on ``env``; every
    step is added to ``transitions`` if given
    (for :func:`~loopwm.agents.honesty.model_honesty`)."""
    check_positive_int("episodes", episodes)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        agent.reset()
        total, done = 0.0, False
        while not done:
            action = agent.act(obs, explore=False)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            if transitions is not None:
                transitions.add(obs, action, next_obs, terminated)
            obs = next_obs
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    agent.reset()
    return returns


EVAL_SEED_OFFSET = 10_000  # evaluations reset the env from seed + this
REPLAY_CAPACITY = 1_000_000  # the default in-memory capacity, ...
REPLAY_MEMORY = 8 * 2**30  # ... or fewer, so that the replay's arrays take at most this


def replay_capacity(config: TrainConfig, env: gym.Env) -> int:
    """Transitions the run's replay keeps in memory: ``config.replay_capacity``, or by
    default :data:`REPLAY_CAPACITY`, capped so that they take at most :data:`REPLAY_MEMORY`
    bytes (observation and next observation in their stored dtype, action, scalars)."""
    if config.replay_capacity is not None:
        return config.replay_capacity
    observations = ObsCodec(env.observation_space)
    obs_bytes = observations.dim * np.dtype(observations.storage_dtype).itemsize
    per_transition = 2 * obs_bytes + 4 * ActionCodec(env.action_space).dim + 32
    return max(1, min(REPLAY_CAPACITY, REPLAY_MEMORY // per_transition))


def default_replay(root: Path, env: gym.Env, config: TrainConfig, resume: bool) -> OnlineReplay:
    """The run's replay in ``root``: reopened on a resume, else new."""
    capacity = replay_capacity(config, env)
    if resume and (root / "meta.json").is_file():
        return OnlineReplay.resume(root, capacity=capacity)
    meta = dataset_meta(config.env_id, env, policy="loopwm-train", seed=config.seed)
    observations = ObsCodec(env.observation_space)
    return OnlineReplay(
        root,
        obs_dim=observations.dim,
        action_dim=ActionCodec(env.action_space).dim,
        meta=meta,
        capacity=capacity,
        obs_dtype=observations.storage_dtype,
    )


class OnlineTrainer:
    """Train an agent online on a real env, in a run folder.

    Args:
        config: the run's settings; with ``resume``, ``None`` continues the run's own
            config.json and a config may only change the step budget.
        run_dir: the run folder (must be new unless ``resume``).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        progress: progress bar (``None``: only when attached to a terminal).
        tensorboard: write TensorBoard logs to ``run_dir/tensorboard``.
        video: write ``run_dir/videos/final.mp4`` at the end (needs a GL backend).
        device: torch device of the agent.
        make_env, make_agent, make_replay, make_logger: factories (tests pass fakes).

    Everything that can fail on a bad setting (the config, the env's spaces, the agent)
    fails in the constructor, before the run folder is written.
    """

    def __init__(
        self,
        config: TrainConfig | None,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        progress: bool | None = None,
        tensorboard: bool = True,
        video: bool = True,
        device: str | torch.device = "cpu",
        make_env: Callable[[str], gym.Env] = make_env,
        make_agent: Callable[..., Agent] = DreamerAgent,
        make_replay: Callable[..., Any] = default_replay,
        make_logger: Callable[[Path], Any] = TensorBoardLogger,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.stored_config = read_config(self.run_dir) if resume else None
        self.config = config = self._resolve_config(config)
        self.progress, self.tensorboard, self.video = progress, tensorboard, video
        self.make_replay, self.make_logger = make_replay, make_logger
        if config.env_kwargs:
            make_env = functools.partial(make_env, **config.env_kwargs)
        make_env = with_action_repeat(make_env, config.repeat)
        self.env = make_vector_env(make_env, config)
        try:
            self.eval_env = make_env(config.env_id)
            check_box_env(self.eval_env)
            self.agent = make_agent(
                self.env.single_observation_space, self.env.single_action_space, config.agent,
                seed=config.seed, device=device,
            )  # fmt: skip
        except BaseException:
            self.env.close()
            if hasattr(self, "eval_env"):
                self.eval_env.close()
            raise
        self.actions = ActionCodec(self.eval_env.action_space)
        spec = self.eval_env.spec
        spec_threshold = spec.reward_threshold if spec is not None else None
        self.reward_threshold = (
            config.reward_threshold if config.reward_threshold is not None else spec_threshold
        )
        self.counters = Counters()
        self.evaluations: list[dict[str, Any]] = []
        self.metrics: dict[str, float] = {}

    def _resolve_config(self, config: TrainConfig | None) -> TrainConfig:
        if self.resume:
            return resume_config(self.run_dir, config)
        if config is None:
            raise ConfigError("a new run needs a TrainConfig")
        check_output_dir(self.run_dir, "the run folder")
        if (self.run_dir / "config.json").exists() or (self.run_dir / "replay").exists():
            raise ExistsError(
                f"{self.run_dir} already holds a run; resume it with --resume {self.run_dir} "
                f"or choose a new --out folder"
            )
        return config

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Collect, store, train, log, evaluate and checkpoint until ``config.steps``;
        returns the run's summary (also written to metrics.json).

        An interrupt (Ctrl-C) or an error still writes every collected transition to the
        replay folder; a resume continues from the last checkpoint with all of them.
        """
        config, env, agent, counters = self.config, self.env, self.agent, self.counters
        if not self.resume:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, config)
        try:
            if self.resume:
                self._load_checkpoint()  # may refuse: before the replay folder is touched
            self.replay = replay = self.make_replay(
                self.run_dir / "replay", self.eval_env, config, self.resume
            )
        except BaseException:
            env.close()
            self.eval_env.close()
            raise
        self._sync_with_replay()
        if self.resume and config != self.stored_config:
            write_config(self.run_dir, config)  # the resume is valid: keep its new budget
        self.logger = logger = (
            self.make_logger(self.run_dir / "tensorboard") if self.tensorboard else NullLogger()
        )
        self.started = time.perf_counter() - counters.wall_seconds
        n = config.num_envs
        env.action_space.seed(config.seed + counters.env_steps)
        obs, _ = env.reset(seed=config.seed + counters.env_steps)  # env i: that seed + i
        agent.reset()
        episode_return, episode_length = np.zeros(n), np.zeros(n, np.int64)
        last_return = float("nan")
        self.bar = bar = tqdm(
            total=config.steps,
            initial=min(counters.env_steps, config.steps),
            desc=f"train {config.env_id}",
            disable=progress_disabled(self.progress),
        )
        try:
            while counters.env_steps < config.steps and not counters.stopped:
                before = counters.env_steps
                if before < config.prefill:
                    actions = env.action_space.sample()
                else:
                    actions = agent.act(obs, explore=True)
                next_obs, reward, terminated, truncated, info = env.step(actions)
                done = terminated | truncated
                final_obs = next_obs.copy()  # the autoreset replaced ended envs' observations
                for i in np.flatnonzero(done):
                    final_obs[i] = info["final_obs"][i]
                vectors = self.actions.to_vectors(actions)  # Discrete: one-hot
                replay.add_batch(obs, vectors, reward, final_obs, terminated, truncated)
                counters.env_steps = step = before + n
                episode_return += reward
                episode_length += 1
                for i in np.flatnonzero(done):
                    counters.episodes += 1
                    last_return = float(episode_return[i])
                    logger.scalars(
                        {"train/return": last_return, "train/length": int(episode_length[i])},
                        step,
                    )
                    episode_return[i], episode_length[i] = 0.0, 0
                if done.any():
                    agent.reset(envs=np.flatnonzero(done).tolist())
                obs = next_obs

                # every transition from the prefill's last one on earns train_ratio updates
                earning = step - max(before, config.prefill - 1)
                counters.updates_owed += config.train_ratio * max(0, earning)
                self._learn(step)
                if self.metrics and _crossed(before, step, config.log_every):
                    self._log_training(step)
                self._evaluate_and_checkpoint(
                    step,
                    evaluate=_crossed(before, step, config.eval_every) or step == config.steps,
                    checkpoint=_crossed(before, step, config.checkpoint_every)
                    or step == config.steps,
                )
                bar.update(n)
                bar.set_postfix(
                    ret=f"{last_return:.1f}",
                    iters=f"{self.metrics.get('loop/imagine_iters_mean', float('nan')):.1f}",
                    refresh=False,
                )
            # A run resumed at (or past) its last step still ends with its updates, a final
            # evaluation and a checkpoint of the agent that produced it.
            step = counters.env_steps
            self._learn(step)
            self._evaluate_and_checkpoint(
                step,
                evaluate=not self.evaluations or self.evaluations[-1]["env_steps"] != step,
                # a kill between the checkpoint's files leaves no matching manifest: rewrite
                checkpoint=counters.checkpoint_steps != step
                or not checkpoint_complete(self.run_dir),
            )
        finally:
            replay.close()  # first: every collected transition reaches the disk
            bar.close()
            logger.close()
            env.close()
            self.eval_env.close()

        summary = self.summary()
        if self.video:
            summary["video"] = final_video(agent, config, self.run_dir)
        write_json(self.run_dir / "metrics.json", summary)
        return summary

    def _load_checkpoint(self) -> None:
        """Counters and agent from the last checkpoint, checked against the resume's config
        before anything in the run folder is touched (a refused resume changes nothing)."""
        counters, config = self.counters, self.config
        remove_stale_temporaries(self.run_dir)
        if (self.run_dir / "agent.pt").is_file():
            payload = load_checkpoint(self.run_dir / "agent.pt")
            if payload["env_id"] != config.env_id:
                raise ConfigError(f"{self.run_dir}/agent.pt is a run of {payload['env_id']}")
            self.agent.load_state_dict(payload["agent"])
            saved = dict(payload["counters"])
            self.evaluations = saved.pop("evaluations", [])
            for key, value in saved.items():
                setattr(counters, key, value)
        taken = Replay.count(self.run_dir / "replay")
        if taken > config.steps:
            raise ConfigError(
                f"{self.run_dir} has already taken {taken} real steps; a resume needs "
                f"--steps of at least that"
            )
        if counters.stopped:
            if config.steps <= self.stored_config.steps:
                raise ConfigError(
                    f"{self.run_dir} finished at step {counters.checkpoint_steps}: its "
                    f"evaluation reached the reward threshold {self.reward_threshold}; give "
                    f"--steps above {self.stored_config.steps} to train on"
                )
            counters.stopped = ""  # a larger budget: train on

    def _sync_with_replay(self) -> None:
        """The step counter is the replay's: steps stored after the last checkpoint are
        kept (they really happened) and the updates they were owed run at the next step."""
        counters, replay, config = self.counters, self.replay, self.config
        if self.resume:
            since = replay.total - max(counters.checkpoint_steps, config.prefill)
            counters.updates_owed += max(0, since) * config.train_ratio
        counters.env_steps = replay.total
        counters.episodes = replay.episodes

    def _learn(self, step: int) -> None:
        if step < self.config.prefill:
            return
        if self.agent.updates == 0:
            for _ in range(self.config.pretrain):
                self.metrics = self.agent.update(self.replay)
        while self.counters.updates_owed >= 1.0:
            self.metrics = self.agent.update(self.replay)
            self.counters.updates_owed -= 1.0

    def _log_training(self, step: int) -> None:
        self.logger.scalars(self.metrics, step)
        for tag, values in self.agent.histograms().items():
            if len(values):
                self.logger.histogram(tag, values, step)
        if self.agent.world_model.looped:
            bound = self.agent.world_model.contraction_bound()
            self.logger.scalars({"loop/contraction_bound": bound}, step)

    def _evaluate_and_checkpoint(self, step: int, evaluate: bool, checkpoint: bool) -> None:
        if evaluate:
            record = self._evaluate(step)
            self.evaluations.append(record)
            self.bar.write(
                f"step {step}: eval return {record['return_mean']:.1f} "
                f"+- {record['return_std']:.1f}"
            )
            threshold = self.reward_threshold
            reached = threshold is not None and record["return_mean"] >= threshold
            if self.config.stop_at_threshold and reached:
                self.counters.stopped = "reward_threshold"
                checkpoint = True  # the run ends here
        if checkpoint:
            self.counters.wall_seconds = time.perf_counter() - self.started
            self.counters.checkpoint_steps = step
            # The replay on disk first: a checkpoint never counts unsaved steps.
            self.replay.flush()
            counters = {**dataclasses.asdict(self.counters), "evaluations": self.evaluations}
            save_checkpoint(
                self.run_dir, self.agent, counters, self.config.env_id,
                action_repeat=self.config.repeat,
            )  # fmt: skip
            write_json(self.run_dir / "metrics.json", self.summary())

    def _evaluate(self, step: int) -> dict[str, Any]:
        config, agent = self.config, self.agent
        with agent.evaluation():  # mid-episode: the training episode's plan is kept
            started = time.perf_counter()
            returns = evaluate_agent(
                agent, self.eval_env, config.eval_episodes, seed=config.seed + EVAL_SEED_OFFSET
            )
            record = {
                "env_steps": step,
                "updates": agent.updates,
                "wall_seconds": round(time.perf_counter() - self.started, 2),
                "eval_seconds": round(time.perf_counter() - started, 2),
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "returns": returns,
            }
            self.logger.scalars(
                {"eval/return": record["return_mean"], "eval/return_std": record["return_std"]},
                step,
            )
            if not isinstance(self.logger, NullLogger):
                try:
                    log_open_loop_video(
                        self.logger,
                        agent.world_model,
                        config.env_id,
                        step,
                        policy=greedy(agent),
                        action_repeat=config.repeat,
                        env_kwargs=config.env_kwargs,
                    )
                except Exception as err:  # a logging video must never stop a training run
                    warnings.warn(f"no open-loop video logged at step {step}: {err}", stacklevel=2)
        return record

    def summary(self) -> dict[str, Any]:
        """The run so far: counters, evaluations, config, versions."""
        final = self.evaluations[-1] if self.evaluations else None
        summary = {
            "env_id": self.config.env_id,
            "env_steps": self.counters.env_steps,
            "action_repeat": self.config.repeat,  # env steps per agent step
            "episodes": self.counters.episodes,
            "updates": self.agent.updates,
            "wall_seconds": round(self.counters.wall_seconds, 2),
            "final_return_mean": final["return_mean"] if final else None,
            "final_return_std": final["return_std"] if final else None,
            "stopped": self.counters.stopped or "steps",
            "reward_threshold": self.reward_threshold,
            "evaluations": self.evaluations,
            "config": self.config.to_dict(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
        }
        if self.agent.world_model.looped:
            summary["contraction_bound"] = self.agent.world_model.contraction_bound()
        return summary


def with_action_repeat(make_env: Callable[..., gym.Env], repeat: int) -> Callable[..., gym.Env]:
    """``make_env`` whose envs apply each action ``repeat`` times (itself for 1)."""
    return make_env if repeat == 1 else functools.partial(make_env, action_repeat=repeat)


def make_vector_env(
    make_env: Callable[[str], gym.Env], config: TrainConfig
) -> gym.vector.VectorEnv:
    """``config.num_envs`` copies of the env as one gymnasium vector env (in subprocesses
    with ``async_envs``) that resets an ended episode within the same step, so that every
    step stores one real transition per env (``info["final_obs"]`` holds the last
    observation of an ended episode)."""
    make_one = functools.partial(make_env, config.env_id)
    vector = gym.vector.AsyncVectorEnv if config.async_envs else gym.vector.SyncVectorEnv
    return vector([make_one] * config.num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether the step count passed a multiple of ``every`` going from before to after."""
    return after // every > before // every


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Train an agent online on a real env; returns the run's summary (also metrics.json).

    ``options`` are :class:`OnlineTrainer`'s (progress, tensorboard, video, device and the
    factories). ``train(None, run_dir, resume=True)`` continues a killed or finished run.
    """
    return OnlineTrainer(config, run_dir, resume=resume, **options).run()


def greedy(agent):
    """The agent's deterministic policy as ``obs -> action``."""

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, explore=False)

    return policy


def final_video(agent, config: TrainConfig, run_dir: Path) -> str | None:
    """``run_dir/videos/final.mp4``: real | imagined | iterations for renderable envs,
    real frames otherwise. A failure warns and returns ``None``: a video never loses a
    finished run."""
    from loopwm.video import record_rollout, write_video

    path = run_dir / "videos" / "final.mp4"
    try:
        try:
            frames, _ = record_rollout(
                agent.world_model,
                config.env_id,
                steps=200,
                resync_every=50,
                policy=greedy(agent),
                size=160,
                seed=config.seed,
                action_repeat=config.repeat,
                env_kwargs=config.env_kwargs,
            )
        except (ConfigError, UnsupportedError):  # no state renderer or decoder: real frames
            frames = _real_frames(agent, config, steps=200)
        return str(write_video(frames, path, fps=30))
    except Exception as err:  # a video must never lose a finished run
        warnings.warn(f"no final video written: {err}", stacklevel=2)
        return None


def _real_frames(agent, config: TrainConfig, *, steps: int) -> list[np.ndarray]:
    env = config.make_env(render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=config.seed)
        agent.reset()
        frames = [env.render()]
        for _ in range(steps - 1):
            obs, _, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
            frames.append(env.render())
            if terminated or truncated:
                obs, _ = env.reset()
                agent.reset()
        # Video encoders want sides that are multiples of 16: crop the border.
        height, width = (side - side % 16 for side in frames[0].shape[:2])
        return [frame[:height, :width] for frame in frames]
    finally:
        env.close()
