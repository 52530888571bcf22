"""A training run's folder: its config, checkpoints and replay.

Layout of ``RUN_DIR``::

    config.json          the TrainConfig (a resume reads it back; only a larger budget
                         or the threshold stop may change it)
    agent.pt             agent checkpoint: networks, optimizers, counters, sampler states
    model.safetensors    the world model alone (for ``loopwm video``, ``dream``, ``fit``),
                         with the env id and action repeat it was trained on
    checkpoint.json      written last: the digests of both files above (a complete unit)
    replay/              every real transition (chunked dataset, see loopwm.replay)
    metrics.json         evaluations so far and the final summary
    tensorboard/         TensorBoard logs
    videos/final.mp4     a rollout of the final policy

``agent.pt`` is written with ``torch.save`` to a temporary file and renamed, and is read
with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers: loading a checkpoint never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from loopwm.agents.config import TrainConfig
from loopwm.checkpoint import save
from loopwm.errors import CheckpointError, ConfigError, MissingError
from loopwm.io import atomic_write, write_json

AGENT_FORMAT = "loopwm-agent"
AGENT_FORMAT_VERSION = 1


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json(run_dir / "config.json", config.to_dict())


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig of an existing run (clear errors for a missing or foreign folder)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise MissingError(f"{run_dir} is not a loopwm run (no config.json)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: not a valid loopwm train config ({err})") from None


# What a resume may change: the step budget, and whether a reward threshold ends the run.
RESUMABLE_FIELDS = ("steps", "stop_at_threshold")


def resume_config(run_dir: str | os.PathLike, requested: TrainConfig | None = None) -> TrainConfig:
    """The config a resume of ``run_dir`` continues with: the run's own config.json, with
    the ``RESUMABLE_FIELDS`` of ``requested`` if given. The one place that decides what a
    resume may change: any other difference is an error naming the fields. Nothing is
    written: the caller stores the config once the resume is under way.
    """
    stored = read_config(run_dir)
    if requested is None:
        return stored
    if requested.env_id != stored.env_id:
        raise ConfigError(
            f"{run_dir} is a run of {stored.env_id}; cannot resume it on {requested.env_id}"
        )
    old, new = _flatten(stored.to_dict()), _flatten(requested.to_dict())
    changed = sorted(k for k in new if new[k] != old.get(k) and k not in RESUMABLE_FIELDS)
    if changed:
        raise ConfigError(
            f"a resume continues {run_dir} with its own config.json; it cannot change "
            f"{', '.join(changed)} (only {', '.join(RESUMABLE_FIELDS)} can)"
        )
    changes = {k: getattr(requested, k) for k in RESUMABLE_FIELDS}
    return stored.replace(**changes)


WHOLE_FIELDS = ("model_overrides", "loss_weights", "env_kwargs")  # compared as one value


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in WHOLE_FIELDS:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


CHECKPOINT_FILES = ("agent.pt", "model.safetensors")
MANIFEST = "checkpoint.json"


def save_checkpoint(
    run_dir: Path, agent, counters: dict[str, Any], env_id: str, *, action_repeat: int = 1
) -> None:
    """Write ``agent.pt`` and ``model.safetensors`` (each atomically), then the manifest
    ``checkpoint.json`` with their digests: a checkpoint is complete only with a manifest
    that matches both files, so a kill between the two files is detected."""
    payload = {
        "format": AGENT_FORMAT,
        "format_version": AGENT_FORMAT_VERSION,
        "env_id": env_id,
        "model_kind": agent.world_model.kind,
        "model_config": json.dumps(agent.world_model.config.to_dict()),
        "counters": json.dumps(counters),
        "agent": agent.state_dict(),
    }
    atomic_write(run_dir / "agent.pt", lambda tmp: torch.save(payload, tmp))
    # the model records the repeat of its data, as loopwm fit's do: DreamEnv follows it
    extra = {"env_id": env_id, "action_repeat": action_repeat}
    save(agent.world_model, run_dir / "model.safetensors", extra=extra)
    digests = {name: _sha256(run_dir / name) for name in CHECKPOINT_FILES}
    write_json(run_dir / MANIFEST, {"env_steps": counters["checkpoint_steps"], "files": digests})


def checkpoint_complete(run_dir: str | os.PathLike) -> bool:
    """Whether the run's manifest exists and matches its checkpoint files."""
    run_dir = Path(run_dir)
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
        files = manifest["files"]
        return all(files[name] == _sha256(run_dir / name) for name in CHECKPOINT_FILES)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed atomic write left in the run (and its replay)."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob(".*.tmp"), *run_dir.glob("replay/.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``agent.pt``; a corrupt, truncated, foreign or newer file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"no agent checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable loopwm agent checkpoint ({message})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != AGENT_FORMAT:
        raise CheckpointError(f"{path}: not a loopwm agent checkpoint")
    if payload.get("format_version") != AGENT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: agent checkpoint format version {payload.get('format_version')}, "
            f"this loopwm reads {AGENT_FORMAT_VERSION}"
        )
    missing = [k for k in ("env_id", "counters", "agent") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: agent checkpoint without {', '.join(missing)}")
    try:
        payload["counters"] = json.loads(payload["counters"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable counters ({err})") from None
    if not isinstance(payload["counters"], dict) or "env_steps" not in payload["counters"]:
        raise CheckpointError(f"{path}: agent checkpoint with malformed counters")
    return payload


def load_agent(run_dir: str | os.PathLike, *, device: str = "cpu"):
    """The trained agent of a run, its TrainConfig and its counters.

    Returns:
        ``(agent, config, counters)``.
    """
    from loopwm.agents.dreamer import DreamerAgent

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    payload = load_checkpoint(run_dir / "agent.pt")
    if payload["env_id"] != config.env_id:
        raise CheckpointError(
            f"{run_dir}/agent.pt was trained on {payload['env_id']}, config.json says "
            f"{config.env_id}"
        )
    env = config.make_env()
    try:
        agent = DreamerAgent(
            env.observation_space, env.action_space, config.agent, seed=config.seed, device=device
        )
    finally:
        env.close()
    try:
        agent.load_state_dict(payload["agent"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{run_dir}/agent.pt does not match its config.json: {err}") from None
    return agent, config, payload["counters"]
