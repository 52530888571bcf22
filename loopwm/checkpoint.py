"""Checkpoints: safetensors weights plus a JSON header (kind, config, format version).

Loading never executes code: safetensors holds raw tensors only, and the header is JSON.
Files are written to a temporary file in the same folder, flushed, then renamed over the
target, so a killed process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from loopwm.config import LoopWMConfig
from loopwm.world_model import WorldModel

FORMAT = "loopwm-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, of another format or mismatched."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path`` (same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    text = json.dumps(data, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save(
    model: WorldModel, path: str | os.PathLike, *, extra: dict[str, Any] | None = None
) -> None:
    """Write ``model`` to ``path`` atomically.

    Args:
        model: any loopwm world model.
        path: target file (conventionally ``*.safetensors``).
        extra: JSON-serialisable metadata kept with the weights (e.g. ``env_id``).
    """
    if not isinstance(model, WorldModel):
        raise TypeError(f"save expects a loopwm world model, got {type(model).__name__}")
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": model.kind,
        "config": json.dumps(model.config.to_dict()),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def _describe_foreign(path: Path) -> str:
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80":
        return "it looks like a Python pickle; loopwm never unpickles files"
    if head[:2] == b"PK":
        return "it looks like a torch.save zip archive (pickle inside); loopwm never unpickles"
    return "it is not a safetensors file"


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Header of a checkpoint: ``{"kind", "config", "extra", "format_version"}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable loopwm checkpoint ({_describe_foreign(path)}; {err})"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: safetensors file without a loopwm checkpoint header")
    version = int(meta.get("format_version", "-1"))
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this loopwm reads {FORMAT_VERSION}"
        )
    try:
        config = LoopWMConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid config in checkpoint header: {err}") from None
    return {"kind": meta.get("kind"), "config": config, "extra": extra, "format_version": version}


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> WorldModel:
    """Load a world model saved by :func:`save` (in eval mode). Never executes code."""
    from loopwm.models import MODEL_CLASSES

    path = Path(path)
    header = read_header(path)
    kind = header["kind"]
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}")
    model = MODEL_CLASSES[kind](header["config"])
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match a {kind} model with its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors)
    model.checkpoint_extra = header["extra"]
    return model.to(map_location).eval()
