"""Fit a world model on stored transitions and measure it on held-out episodes."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from loopwm.checkpoint import save
from loopwm.checks import progress_disabled
from loopwm.config import FitConfig
from loopwm.errors import ConfigError, ExistsError
from loopwm.io import check_output_dir, write_json
from loopwm.models import build_model, model_config
from loopwm.replay import Replay, meta_image_shape, split_episode_ids
from loopwm.summaries import TensorBoardLogger
from loopwm.training import WorldModelTrainer, evaluate, set_obs_statistics
from loopwm.video import log_open_loop_video
from loopwm.world_model import WorldModel

LOG_EVERY = 50  # training steps between TensorBoard scalar writes


def _scalars(prefix: str, held: dict, keep_lists: bool = False) -> dict:
    """JSON-friendly part of an evaluation: numbers (and lists if ``keep_lists``)."""
    kinds = (int, float, list) if keep_lists else (int, float)
    return {f"{prefix}{k}": v for k, v in held.items() if isinstance(v, kinds)}


def _log_evaluation(logger, model, held, heldout, record, step) -> None:
    logger.scalars({k: v for k, v in record.items() if k.startswith(("eval/", "loop/"))}, step)
    logger.histogram("loop/iters", held["iters_per_step"], step)
    if model.looped:
        logger.scalars({"loop/contraction_bound": model.contraction_bound()}, step)
    try:
        meta = heldout.meta
        repeat = int(meta.get("action_repeat", 1))
        log_open_loop_video(logger, model, meta.get("env_id"), step, action_repeat=repeat)
    except Exception as err:  # a logging video must never stop a fit
        warnings.warn(f"no open-loop video logged at step {step}: {err}", stacklevel=2)


def fit(
    data: str | os.PathLike | Replay,
    *,
    model: str = "loopwm",
    preset: str = "default",
    model_overrides: dict[str, Any] | None = None,
    config: FitConfig | None = None,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    device: str = "cpu",
    logdir: str | os.PathLike | None = None,
    distributed: bool = False,
    force: bool = False,
) -> tuple[WorldModel, dict[str, Any]]:
    """Train world model ``model`` on a dataset folder (or :class:`Replay`).

    Episodes are split into train and held-out sets; the returned metrics hold the
    held-out 1-step and K-step open-loop errors next to the copy-last-observation
    predictor's. With ``out``, writes ``out/model.safetensors`` and ``out/metrics.json``;
    with ``logdir``, TensorBoard scalars (``wm/*``, ``loop/*``, ``eval/*``), histograms of
    the held-out loop iterations, and an open-loop prediction video where the env renders.

    An ``out`` that already holds a model is refused unless ``force``.

    With ``distributed`` (or under ``torchrun``), every process trains on its shard of the
    training episodes with ``batch_size / world_size`` windows per step and
    DistributedDataParallel; only rank 0 evaluates, logs and writes (see
    :mod:`loopwm.distributed`).

    Returns:
        ``(model, metrics)`` (on ranks > 0, metrics hold only the rank and the config).
    """
    cfg = config or FitConfig()
    for folder, what in ((out, "--out"), (logdir, "the TensorBoard folder")):
        if folder is not None:
            check_output_dir(folder, what)  # now, not after the whole fit
    if out is not None and (Path(out) / "model.safetensors").exists() and not force:
        raise ExistsError(
            f"{out} already holds a fitted model; choose another --out, or --force "
            f"(force=True) to overwrite it"
        )
    if not distributed:
        replay = data if isinstance(data, Replay) else Replay.load(data)
        train, heldout = replay.split(cfg.holdout_fraction, cfg.seed)
        return _fit(
            train, heldout, model, preset, model_overrides, cfg, out, progress, device, logdir
        )
    from loopwm import distributed as dist_utils

    ctx = dist_utils.init_distributed(device)
    try:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"batch_size {cfg.batch_size} is the global batch: it must be divisible by "
                f"the {ctx.world_size} processes"
            )
        ids = np.unique(data.episode) if isinstance(data, Replay) else Replay.episode_ids(data)
        train_ids, heldout_ids = split_episode_ids(ids, cfg.holdout_fraction, cfg.seed)

        def read(episodes: np.ndarray) -> Replay:
            if isinstance(data, Replay):
                return data.select_episodes(episodes)
            return Replay.load(data, episodes=episodes)

        train = read(dist_utils.shard(train_ids, ctx))
        heldout = read(heldout_ids) if ctx.is_main else None
        result = _fit(
            train,
            heldout,
            model,
            preset,
            model_overrides,
            cfg,
            out,
            progress,
            ctx.device,
            logdir,
            ctx=ctx,
        )
        # Leave together: ranks > 0 wait until rank 0 has written its files, so no rank
        # tears the process group down under another (gloo aborts on that).
        torch.distributed.barrier()
        return result
    finally:
        dist_utils.shutdown()


def _check_heldout(heldout: Replay | None, horizon: int, ctx) -> None:
    """Raise on every rank if rank 0's held-out episodes cannot be scored."""
    problem = ""
    if heldout is not None:
        try:
            heldout.eval_windows(horizon, 1)
        except ValueError as err:
            problem = str(err)
    if ctx is not None:
        flag = torch.tensor([1.0 if problem else 0.0], device=ctx.device)
        torch.distributed.all_reduce(flag)
        if flag.item() and not problem:
            problem = "rank 0 cannot score its held-out episodes (its error says why)"
    if problem:
        raise ConfigError(problem)


def _fit(
    train: Replay,
    heldout: Replay | None,
    model: str,
    preset: str,
    model_overrides: dict[str, Any] | None,
    cfg: FitConfig,
    out: str | os.PathLike | None,
    progress: bool | None,
    device: str | torch.device,
    logdir: str | os.PathLike | None,
    ctx=None,
) -> tuple[WorldModel, dict[str, Any]]:
    main = ctx is None or ctx.is_main
    _check_heldout(heldout, cfg.eval_horizon, ctx)  # fail now, not at the first evaluation
    longest = int(np.unique(train.episode, return_counts=True)[1].max())
    if cfg.horizon > longest:
        raise ConfigError(
            f"--horizon {cfg.horizon} is longer than the longest training episode ({longest} "
            f"transitions): every window would be mostly padding"
        )
    model_cfg = model_config(
        model,
        preset,
        obs_dim=train.obs_dim,
        action_dim=train.action_dim,
        image_shape=meta_image_shape(train.meta),
        overrides=model_overrides,
    )
    torch.manual_seed(cfg.seed)  # the same initial parameters on every rank
    world_model = build_model(model, model_cfg).to(device)
    if ctx is None:
        set_obs_statistics(world_model, train)
        trainer = WorldModelTrainer(world_model, cfg)
    else:
        from loopwm.distributed import global_obs_statistics

        world_model.set_obs_normalizer(*global_obs_statistics(train, model_cfg, ctx.device))
        # Each rank draws its share of the global batch, from its own sampler stream.
        local = dataclasses.replace(
            cfg, batch_size=cfg.batch_size // ctx.world_size, seed=cfg.seed + ctx.rank
        )
        trainer = WorldModelTrainer(world_model, local, ddp=True)
        counts = torch.tensor([len(train), train.num_episodes], device=ctx.device)
        torch.distributed.all_reduce(counts)
        train_transitions, train_episodes = (int(v) for v in counts)
    wm = trainer.model
    if ctx is None:
        train_transitions, train_episodes = len(train), train.num_episodes

    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    disable = progress_disabled(progress) if main else True
    bar = tqdm(range(1, cfg.steps + 1), desc=f"fit {model}", disable=disable)
    logger = TensorBoardLogger(logdir) if logdir is not None and main else None
    for step in bar:
        metrics = trainer.train_step(train)
        bar.set_postfix(loss=f"{metrics['wm/loss']:.4f}", iters=f"{metrics['loop/iters_mean']:.1f}")
        if logger is not None and (step % LOG_EVERY == 0 or step == 1):
            logger.scalars(metrics, step)
        if main and (step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0)):
            held = evaluate(wm, heldout, cfg.eval_horizon)
            record = {"step": step, **metrics, **_scalars("eval/", held)}
            history.append(record)
            if logger is not None:
                _log_evaluation(logger, wm, held, heldout, record, step)
    train_seconds = time.perf_counter() - started
    if logger is not None:
        logger.close()
    wm.eval()
    if not main:
        return wm, {"rank": ctx.rank, "config": wm.config.to_dict()}

    env_id = train.meta.get("env_id")
    # env steps one transition spans: dream envs and videos of this model must repeat too
    action_repeat = int(train.meta.get("action_repeat", 1))
    result: dict[str, Any] = {
        "model": model,
        "preset": preset,
        "env_id": env_id,
        "action_repeat": action_repeat,
        "parameters": wm.num_parameters(),
        "train_transitions": train_transitions,
        "train_episodes": train_episodes,
        "heldout_episodes": heldout.num_episodes,
        "train_seconds": round(train_seconds, 2),
        "heldout": _scalars("", evaluate(wm, heldout, cfg.eval_horizon), keep_lists=True),
        "history": history,
        "config": wm.config.to_dict(),
        "fit_config": {k: v for k, v in vars(cfg).items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
    if ctx is not None:
        result["world_size"] = ctx.world_size
        result["backend"] = ctx.backend
    if wm.looped:
        result["contraction_bound"] = wm.contraction_bound()
    if out is not None:
        out = Path(out)
        save(
            wm,
            out / "model.safetensors",
            extra={"env_id": env_id, "action_repeat": action_repeat},
        )
        write_json(out / "metrics.json", result)
    return wm, result
