"""Model registry: the ``--model`` names of ``loopwm fit`` and of checkpoints."""

from __future__ import annotations

from loopwm.baselines import GRUWorldModel, MLPWorldModel
from loopwm.config import LoopWMConfig
from loopwm.looped import GatedLoopWM, LoopWM
from loopwm.world_model import WorldModel

MODEL_CLASSES: dict[str, type[WorldModel]] = {
    cls.kind: cls for cls in (LoopWM, GatedLoopWM, MLPWorldModel, GRUWorldModel)
}
MODEL_NAMES = ("loopwm", "loopwm-fixed", "loopwm-gate", "mlp", "gru")


def model_config(
    name: str, preset: str, *, obs_dim: int, action_dim: int, overrides: dict | None = None
) -> LoopWMConfig:
    """The config of world model ``name`` from a preset and field overrides.

    ``loopwm-fixed`` runs, unless told otherwise, as many iterations as LoopWM trains with.
    """
    overrides = dict(overrides or {})
    if name == "loopwm-fixed" and "max_iters" not in overrides:
        base = LoopWMConfig.preset(preset, obs_dim=obs_dim, action_dim=action_dim)
        mean = overrides.get("train_iters_mean", base.train_iters_mean)
        overrides["max_iters"] = max(1, round(mean))
    return LoopWMConfig.preset(preset, obs_dim=obs_dim, action_dim=action_dim, **overrides)


def build_model(name: str, config: LoopWMConfig) -> WorldModel:
    """Build the world model called ``name`` (one of ``MODEL_NAMES``).

    ``loopwm-fixed`` is LoopWM with ``halting="fixed"``: it always runs ``max_iters``
    iterations, in training too (the ablation for adaptive compute).
    """
    if name == "loopwm-fixed":
        return LoopWM(config.replace(halting="fixed"))
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODEL_NAMES)}")
    return MODEL_CLASSES[name](config)
