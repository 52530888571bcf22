"""The online loop of ``loopwm train``: collect -> store -> train on a ratio -> log ->
evaluate -> checkpoint.

:func:`train` receives factories for the env, the agent, the replay and the logger, so
the loop runs unchanged on fakes in tests. A run lives in one folder (see
:mod:`loopwm.agents.run`); ``train(..., resume=True)`` continues a killed run from its last
checkpoint with every transition that reached the disk.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from loopwm.agents.config import TrainConfig
from loopwm.agents.dreamer import DreamerAgent, check_spaces
from loopwm.agents.run import (
    load_checkpoint,
    read_config,
    save_checkpoint,
    write_config,
    write_json,
)
from loopwm.envs.spaces import box_space_meta, make_env
from loopwm.fit import log_open_loop_video
from loopwm.online_replay import OnlineReplay
from loopwm.summaries import TensorBoardLogger


class NullLogger:
    """A logger that drops everything (``--no-tensorboard``)."""

    def scalars(self, metrics, step) -> None: ...

    def histogram(self, tag, values, step) -> None: ...

    def video(self, tag, frames, step, fps: int = 10) -> None: ...

    def close(self) -> None: ...


def evaluate_agent(agent, env: gym.Env, episodes: int, *, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes of the agent's greedy policy on ``env``."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        agent.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    agent.reset()
    return returns


def _default_replay(root: Path, env: gym.Env, config: TrainConfig, resume: bool) -> OnlineReplay:
    if resume and (root / "meta.json").is_file():
        return OnlineReplay.resume(root, capacity=config.replay_capacity)
    meta = {
        "env_id": config.env_id,
        "policy": "loopwm-train",
        "seed": config.seed,
        "observation_space": box_space_meta(env.observation_space),
        "action_space": box_space_meta(env.action_space),
    }
    return OnlineReplay(
        root,
        obs_dim=env.observation_space.shape[0],
        action_dim=env.action_space.shape[0],
        meta=meta,
        capacity=config.replay_capacity,
    )


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool | None = None,
    tensorboard: bool = True,
    video: bool = True,
    make_env: Callable[[str], gym.Env] = make_env,
    make_agent: Callable[..., Any] = DreamerAgent,
    make_replay: Callable[..., Any] = _default_replay,
    make_logger: Callable[[Path], Any] = TensorBoardLogger,
) -> dict[str, Any]:
    """Train an agent online on a real env; returns the run's summary (also metrics.json).

    Args:
        config: the run's settings; ``None`` with ``resume`` reads the run's config.json.
        run_dir: the run folder (must be new unless ``resume``).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        progress: progress bar (``None``: only when attached to a terminal).
        tensorboard: write TensorBoard logs to ``run_dir/tensorboard``.
        video: write ``run_dir/videos/final.mp4`` at the end (needs a GL backend).
        make_env, make_agent, make_replay, make_logger: factories (tests pass fakes).

    An interrupt (Ctrl-C) or an error still writes every collected transition to the
    replay folder; ``resume=True`` continues from the last checkpoint with all of them.
    """
    run_dir = Path(run_dir)
    config = _resolve_config(config, run_dir, resume)
    env = make_env(config.env_id)
    check_spaces(env.observation_space, env.action_space)
    # The agent is built before anything is written: a bad setting leaves no folder behind.
    agent = make_agent(env.observation_space, env.action_space, config.agent, seed=config.seed)
    eval_env = make_env(config.env_id)
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    replay = make_replay(run_dir / "replay", env, config, resume)
    counters = {
        "env_steps": 0,
        "episodes": 0,
        "updates_owed": 0.0,
        "wall_seconds": 0.0,
        "checkpoint_steps": 0,
    }
    evaluations: list[dict[str, Any]] = []
    if resume and (run_dir / "agent.pt").is_file():
        payload = load_checkpoint(run_dir / "agent.pt")
        if payload["env_id"] != config.env_id:
            raise ValueError(f"{run_dir}/agent.pt is a run of {payload['env_id']}")
        agent.load_state_dict(payload["agent"])
        counters.update(payload["counters"])
        evaluations = counters.pop("evaluations", [])
    # Transitions stored after the last checkpoint are kept (they really happened) and
    # the updates they were owed are run on the next step.
    since = replay.total - max(counters["checkpoint_steps"], config.prefill)
    counters["updates_owed"] += max(0, since) * config.train_ratio if resume else 0.0
    counters["env_steps"] = replay.total
    counters["episodes"] = replay.episodes
    logger = make_logger(run_dir / "tensorboard") if tensorboard else NullLogger()

    started = time.perf_counter() - counters["wall_seconds"]
    env.action_space.seed(config.seed + counters["env_steps"])
    obs, _ = env.reset(seed=config.seed + counters["env_steps"])
    agent.reset()
    episode_return, episode_length, last_return = 0.0, 0, float("nan")
    metrics: dict[str, float] = {}
    bar = tqdm(
        total=config.steps,
        initial=min(counters["env_steps"], config.steps),
        desc=f"train {config.env_id}",
        disable=None if progress is None else not progress,
    )

    def learn(step: int) -> None:
        nonlocal metrics
        if step < config.prefill:
            return
        if agent.updates == 0:
            for _ in range(config.pretrain):
                metrics = agent.update(replay)
        while counters["updates_owed"] >= 1.0:
            metrics = agent.update(replay)
            counters["updates_owed"] -= 1.0

    def evaluate_and_checkpoint(step: int, evaluate: bool, checkpoint: bool) -> None:
        if evaluate:
            evaluations.append(_evaluate(agent, eval_env, config, step, started, logger))
            bar.write(
                f"step {step}: eval return {evaluations[-1]['return_mean']:.1f} "
                f"+- {evaluations[-1]['return_std']:.1f}"
            )
        if checkpoint:
            counters["wall_seconds"] = time.perf_counter() - started
            counters["checkpoint_steps"] = step
            _checkpoint(run_dir, agent, replay, counters, evaluations, config)

    try:
        while counters["env_steps"] < config.steps:
            step = counters["env_steps"]
            if step < config.prefill:
                action = env.action_space.sample()
            else:
                action = agent.act(obs, explore=True)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(obs, action, reward, next_obs, terminated, truncated)
            counters["env_steps"] = step = step + 1
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                counters["episodes"] += 1
                last_return = episode_return
                logger.scalars(
                    {"train/return": episode_return, "train/length": episode_length}, step
                )
                episode_return, episode_length = 0.0, 0
                obs, _ = env.reset()
                agent.reset()
            else:
                obs = next_obs

            if step >= config.prefill:
                counters["updates_owed"] += config.train_ratio
            learn(step)
            if metrics and step % config.log_every == 0:
                _log_training(logger, agent, metrics, step)
            evaluate_and_checkpoint(
                step,
                evaluate=step % config.eval_every == 0 or step == config.steps,
                checkpoint=step % config.checkpoint_every == 0 or step == config.steps,
            )
            bar.update(1)
            bar.set_postfix(
                ret=f"{last_return:.1f}",
                iters=f"{metrics.get('loop/imagine_iters_mean', float('nan')):.1f}",
                refresh=False,
            )
        # A run resumed at (or past) its last step still ends with its updates, a final
        # evaluation and a checkpoint of the agent that produced it.
        step = counters["env_steps"]
        learn(step)
        evaluate_and_checkpoint(
            step,
            evaluate=not evaluations or evaluations[-1]["env_steps"] != step,
            checkpoint=counters["checkpoint_steps"] != step,
        )
    finally:
        replay.close()  # first: every collected transition reaches the disk
        bar.close()
        logger.close()
        env.close()
        eval_env.close()

    summary = _summary(config, agent, counters, evaluations)
    if video:
        summary["video"] = _final_video(agent, config, run_dir)
    write_json(run_dir / "metrics.json", summary)
    return summary


def _resolve_config(config: TrainConfig | None, run_dir: Path, resume: bool) -> TrainConfig:
    if resume:
        stored = read_config(run_dir)
        if config is not None and config.env_id != stored.env_id:
            raise ValueError(
                f"{run_dir} is a run of {stored.env_id}; cannot resume it on {config.env_id}"
            )
        if config is not None and config.steps != stored.steps:
            stored = TrainConfig.from_dict({**stored.to_dict(), "steps": config.steps})
            write_config(run_dir, stored)  # a resume may extend the step budget
        return stored
    if config is None:
        raise ValueError("a new run needs a TrainConfig")
    if (run_dir / "config.json").exists() or (run_dir / "replay").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose a new "
            f"--out folder"
        )
    return config


def _log_training(logger, agent, metrics: dict[str, float], step: int) -> None:
    logger.scalars(metrics, step)
    if len(agent.last_imagined_iters):
        logger.histogram("loop/imagine_iters", agent.last_imagined_iters, step)
    if agent.world_model.looped:
        logger.scalars({"loop/contraction_bound": agent.world_model.contraction_bound()}, step)


def _evaluate(agent, env, config: TrainConfig, step: int, started: float, logger) -> dict:
    # Evaluation runs mid-episode: keep the training episode's plan for its next step.
    planner = getattr(agent, "planner", None)
    plan = planner._mean if planner is not None else None
    try:
        return _evaluate_now(agent, env, config, step, started, logger)
    finally:
        if planner is not None:
            planner._mean = plan


def _evaluate_now(agent, env, config: TrainConfig, step: int, started: float, logger) -> dict:
    returns = evaluate_agent(agent, env, config.eval_episodes, seed=config.seed + 10_000)
    record = {
        "env_steps": step,
        "updates": agent.updates,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": returns,
    }
    logger.scalars(
        {"eval/return": record["return_mean"], "eval/return_std": record["return_std"]}, step
    )
    if not isinstance(logger, NullLogger):
        try:
            log_open_loop_video(
                logger, agent.world_model, config.env_id, step, policy=_greedy_policy(agent)
            )
        except Exception as err:  # a logging video must never stop a training run
            warnings.warn(f"no open-loop video logged at step {step}: {err}", stacklevel=2)
    return record


def _checkpoint(run_dir, agent, replay, counters, evaluations, config) -> None:
    replay.flush()  # the replay on disk first: a checkpoint never counts unsaved steps
    save_checkpoint(run_dir, agent, {**counters, "evaluations": evaluations}, config.env_id)
    write_json(run_dir / "metrics.json", _summary(config, agent, counters, evaluations))


def _summary(config: TrainConfig, agent, counters: dict, evaluations: list) -> dict[str, Any]:
    final = evaluations[-1] if evaluations else None
    summary = {
        "env_id": config.env_id,
        "env_steps": counters["env_steps"],
        "episodes": counters["episodes"],
        "updates": agent.updates,
        "wall_seconds": round(counters["wall_seconds"], 2),
        "final_return_mean": final["return_mean"] if final else None,
        "final_return_std": final["return_std"] if final else None,
        "evaluations": evaluations,
        "config": config.to_dict(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
    if agent.world_model.looped:
        summary["contraction_bound"] = agent.world_model.contraction_bound()
    return summary


def _final_video(agent, config: TrainConfig, run_dir: Path) -> str | None:
    """real | imagined | iterations for renderable envs, real frames otherwise."""
    from loopwm.video import record_rollout, write_video

    path = run_dir / "videos" / "final.mp4"
    try:
        try:
            frames, _ = record_rollout(
                agent.world_model,
                config.env_id,
                steps=200,
                resync_every=50,
                policy=_greedy_policy(agent),
                size=160,
                seed=config.seed,
            )
        except ValueError:  # no state renderer for this env: real frames only
            frames = _real_frames(agent, config.env_id, steps=200, seed=config.seed)
        return str(write_video(frames, path, fps=30))
    except Exception as err:  # a video must never lose a finished run
        warnings.warn(f"no final video written: {err}", stacklevel=2)
        return None


def _greedy_policy(agent):
    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, explore=False)

    return policy


def _real_frames(agent, env_id: str, *, steps: int, seed: int) -> list[np.ndarray]:
    env = gym.make(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
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
