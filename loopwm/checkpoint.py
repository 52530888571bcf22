"""Checkpoints: safetensors weights plus a JSON header (kind, config, format version).

Loading never executes code: safetensors holds raw tensors only, and the header is JSON.
Files are written to a temporary file in the same folder, flushed, then renamed over the
target, so a killed process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from loopwm.config import LoopWMConfig
from loopwm.errors import CheckpointError, MissingError, UnsupportedError
from loopwm.io import atomic_write
from loopwm.world_model import WorldModel, ensemble_size

FORMAT = "loopwm-checkpoint"
FORMAT_VERSION = 2
# Version 1 kept every family's fields in one config; these belonged to one family each.
_V1_FAMILY_FIELDS = ("mlp_depth", "gate_threshold", "gate_tol")


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
        raise UnsupportedError(f"save expects a loopwm world model, got {type(model).__name__}")
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": model.kind,
        "config": json.dumps(model.config.to_dict()),
        # a decoder-free model says so, and loads as one (its decode() refuses)
        "extra": json.dumps({**(extra or {}), **({} if model.decodes else {"decoder": False})}),
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
    """Header of a checkpoint: ``{"kind", "config", "extra", "format_version"}``, with the
    config built as the family's config class."""
    from loopwm.models import model_family

    path = Path(path)
    if not path.is_file():
        raise MissingError(f"no checkpoint at {path}")
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
    try:
        version = int(meta.get("format_version", "-1"))
    except ValueError:
        version = -1
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this loopwm reads {FORMAT_VERSION}"
        )
    kind = meta.get("kind")
    try:
        config_class = model_family(kind).cls.config_class
    except ValueError:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}") from None
    try:
        fields = json.loads(meta["config"])
        if version == 1:
            own = config_class.__dataclass_fields__
            fields = {k: v for k, v in fields.items() if k in own or k not in _V1_FAMILY_FIELDS}
        config: LoopWMConfig = config_class.from_dict(fields)
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid config in checkpoint header: {err}") from None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: the header's extra must be a JSON object, got {extra!r}")
    return {"kind": kind, "config": config, "extra": extra, "format_version": version}


# Config fields that are sizes of some stored tensor, and counts of stored layers.
_SIZE_FIELDS = (
    "obs_dim",
    "action_dim",
    "latent_dim",
    "hidden_dim",
    "inject_dim",
    "block_hidden",
    "conv_depth",
)
_COUNT_FIELDS = ("block_layers", "mlp_depth", "ensemble")


def _check_config_fits(path: Path, config: LoopWMConfig, stored: dict[str, tuple]) -> None:
    """Refuse, before even a skeleton is built, a config whose sizes no stored tensor has
    room for (every size is a dimension of some weight; every layer holds a tensor)."""
    largest = max((math.prod(shape) for shape in stored.values()), default=0)
    for name in _SIZE_FIELDS:
        if getattr(config, name, 0) > largest:
            raise CheckpointError(
                f"{path}: the header's {name}={getattr(config, name)} is larger than any of "
                f"the file's tensors ({largest} values): the config implies other shapes"
            )
    for name in _COUNT_FIELDS:
        if getattr(config, name, 0) > len(stored):
            raise CheckpointError(
                f"{path}: the header's {name}={getattr(config, name)} exceeds the file's "
                f"{len(stored)} tensors: the config implies other shapes"
            )


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> WorldModel:
    """Load a world model saved by :func:`save` (in eval mode). Never executes code."""
    from loopwm.models import model_family

    path = Path(path)
    header = read_header(path)
    kind = header["kind"]
    family = model_family(kind).cls
    # The header's config is checked against the file's tensor shapes before anything is
    # allocated: a small file cannot make loopwm build a huge model.
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            stored = {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from None
    _check_config_fits(path, header["config"], stored)
    members = ensemble_size(stored)
    if members != header["config"].ensemble:
        raise CheckpointError(
            f"{path}: the file holds an ensemble of {members} member(s), its header says "
            f"ensemble={header['config'].ensemble}"
        )
    with torch.device("meta"):
        skeleton = family(header["config"])
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match a {kind} model with its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for name, shape in stored.items():
        if shape != expected[name]:
            raise CheckpointError(
                f"{path}: {name} has shape {shape}, the config implies {expected[name]}"
            )
    model = family(header["config"])
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from None
    bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{path}: non-finite (NaN or inf) weights in {bad[:5]}")
    model.load_state_dict(tensors)
    model.checkpoint_extra = header["extra"]
    decodes = header["extra"].get("decoder", True)
    if not isinstance(decodes, bool):
        raise CheckpointError(f"{path}: the header's extra decoder must be true or false")
    model.decodes = decodes
    return model.to(map_location).eval()


def recorded_action_repeat(model: WorldModel) -> int:
    """Env steps one transition of ``model`` spans, as its checkpoint records (``loopwm
    fit`` copies it from the dataset); 1 for a model that records none."""
    value = (getattr(model, "checkpoint_extra", {}) or {}).get("action_repeat", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"the checkpoint's action_repeat must be a positive integer, got {value!r}"
        )
    return value
