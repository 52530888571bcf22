"""The registry of world-model families: the names ``--model`` accepts and checkpoints record.

A family is a :class:`~loopwm.world_model.WorldModel` subclass registered with
:func:`register_model` in its own file; :mod:`loopwm.models` imports the files. Adding a
family is one new file plus one line in ``loopwm.models.FAMILY_MODULES``::

    @register_model("my-model")
    class MyWorldModel(WorldModel):
        kind = "my-model"
        def _transition(self, latent, inject, *, tol, max_iters): ...

A class may be registered under several names with different config defaults (a
documented preset such as ``loopwm-fixed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopwm.errors import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    """One registered name: the class it builds and the config defaults it implies."""

    name: str
    cls: type
    requires: dict[str, Any] = field(default_factory=dict)
    """Config fields that make the family what it is (always set, never overridden)."""
    defaults: Callable[[Any], dict[str, Any]] | None = None
    """Config fields derived from the preset's config, set under the user's overrides."""


MODEL_REGISTRY: dict[str, ModelFamily] = {}


def register_model(
    name: str,
    *,
    requires: dict[str, Any] | None = None,
    defaults: Callable[[Any], dict[str, Any]] | None = None,
):
    """Class decorator: make ``cls`` buildable as ``name``, with config fields it
    ``requires`` and ``defaults`` derived from the preset (see :class:`ModelFamily`)."""
    requires = dict(requires or {})

    def register(cls: type) -> type:
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name].cls is not cls:
            raise ConfigError(f"model name {name!r} is already registered")
        unknown = sorted(set(requires) - set(cls.config_class.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{name}: {unknown} are not {cls.config_class.__name__} fields")
        MODEL_REGISTRY[name] = ModelFamily(name, cls, requires, defaults)
        return cls

    return register
