"""World-model families by name: the ``--model`` names of the CLI and of checkpoints.

Each family registers itself (:func:`loopwm.registry.register_model`) in its own file;
this module imports those files, one line each, and builds models by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from loopwm.config import LoopWMConfig
from loopwm.errors import ConfigError
from loopwm.registry import MODEL_REGISTRY, ModelFamily
from loopwm.world_model import WorldModel

FAMILY_MODULES = (
    "loopwm.looped",  # loopwm, loopwm-fixed, loopwm-gate
    "loopwm.baselines",  # mlp, gru
)
for _module in FAMILY_MODULES:
    importlib.import_module(_module)

MODEL_NAMES = tuple(MODEL_REGISTRY)  # the families of the modules above
MODEL_CHOICES = MODEL_REGISTRY.keys()  # a live view: also families registered later


def model_family(name: str) -> ModelFamily:
    """The registered family ``name`` (a clear error naming the choices otherwise)."""
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose from {list(MODEL_CHOICES)}")
    return MODEL_REGISTRY[name]


def model_config(
    name: str,
    preset: str,
    *,
    obs_dim: int,
    action_dim: int,
    image_shape: tuple[int, ...] = (),
    overrides: dict | None = None,
) -> LoopWMConfig:
    """The config of world model ``name``: its family's config class at ``preset`` with
    ``overrides`` (field names of that config class), the family's derived defaults for
    the fields not overridden, and the fields the family requires. ``obs_dim``,
    ``action_dim`` and ``image_shape`` come from the env's spaces."""
    family = model_family(name)
    overrides = dict(overrides or {})
    from_env = sorted(set(overrides) & {"obs_dim", "action_dim", "image_shape"})
    if from_env:
        raise ConfigError(f"{from_env} come from the env's spaces and cannot be overridden")
    for key, value in family.requires.items():
        if key in overrides and overrides[key] != value:
            raise ConfigError(f"the {name} model needs {key}={value!r}, got {overrides[key]!r}")
    config_class = family.cls.config_class
    fields = {**overrides, **family.requires}
    config = config_class.preset(
        preset, obs_dim=obs_dim, action_dim=action_dim, image_shape=image_shape, **fields
    )
    if family.defaults is None:
        return config
    derived = {k: v for k, v in family.defaults(config).items() if k not in overrides}
    return config.replace(**derived)


def build_model(name: str, config: LoopWMConfig) -> WorldModel:
    """Build the world model called ``name`` (one of ``MODEL_NAMES``) from ``config``.

    A plain :class:`LoopWMConfig` is widened to the family's config class (its own fields
    at their defaults); the fields the family requires are set.
    """
    family = model_family(name)
    config_class = family.cls.config_class
    known = config_class.__dataclass_fields__
    fields: dict[str, Any] = {k: v for k, v in config.to_dict().items() if k in known}
    return family.cls(config_class.from_dict({**fields, **family.requires}))
