"""Command-line flags generated from the config dataclasses, so the two cannot drift.

Every field of a frozen config dataclass becomes a flag: ``--NAME`` at the top level and
``--SECTION.NAME`` for a nested config (``--agent.horizon``, ``--agent.planner.kind``),
with the field's type, its docstring as help and its real default shown. Flags not given
stay unset, so a config is rebuilt from its own defaults (or a stored config) with only
the given fields replaced.

World-model fields depend on the chosen family and preset; they are flags too
(``--wm.latent-dim``), documented with each preset's value, and become the overrides
handed to :func:`loopwm.models.model_config`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import typing
from typing import Any

from loopwm.config import MODEL_PRESETS, PRESET_NAMES
from loopwm.errors import ConfigError

WM_PREFIX = "wm."
ENV_FIELDS = ("obs_dim", "action_dim", "image_shape")  # from the env's spaces, never a flag


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of dataclass ``cls`` (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _parser_for(kind: Any):
    if kind is bool:
        return _parse_bool
    if kind in (int, float, str):
        return kind
    return _parse_json  # dicts and anything structured: a JSON value


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"expected a JSON value, got {text!r}") from None


def _metavar(kind: Any) -> str:
    return getattr(kind, "__name__", "value").upper()  # float | None: VALUE


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    prefix: str = "",
    aliases: dict[str, list[str]] | None = None,
    skip: tuple[str, ...] = (),
    instance: Any = None,
) -> None:
    """Add one flag per field of dataclass ``cls`` (recursing into nested configs).

    Args:
        prefix: dotted path of ``cls`` inside the root config (``""`` at the root).
        aliases: extra option strings per dotted field path, e.g.
            ``{"agent.planner.kind": ["--planner"]}``.
        skip: dotted field paths that get no flag.
        instance: whose values are the defaults (``cls()``; a nested config's are its
            parent's default for that field).
    """
    aliases = aliases or {}
    instance = cls() if instance is None else instance
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{prefix.rstrip('.') or cls.__name__} ({cls.__name__})")
    for field in dataclasses.fields(cls):
        path = prefix + field.name
        if path in skip:
            continue
        default = getattr(instance, field.name)
        if dataclasses.is_dataclass(default):
            add_config_arguments(
                parser, type(default), prefix=path + ".", aliases=aliases, skip=skip,
                instance=default,
            )  # fmt: skip
            continue
        choices = field.metadata.get("choices")
        help_text = f"{docs.get(field.name, '')} (default: {default!r})"
        group.add_argument(
            _flag(path),
            *aliases.get(path, []),
            dest=path,
            type=_parser_for(hints[field.name]),
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else _metavar(hints[field.name]),
            help=_escape(help_text),
        )


def config_from_args(cls: type, args: argparse.Namespace, base: Any = None, prefix: str = ""):
    """``base`` (default: ``cls()``) with every field given on the command line replaced."""
    base = cls() if base is None else base
    given = vars(args)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        path = prefix + field.name
        value = getattr(base, field.name)
        if dataclasses.is_dataclass(value):
            nested = config_from_args(type(value), args, value, path + ".")
            if nested != value:
                changes[field.name] = nested
        elif path in given:
            changes[field.name] = given[path]
    return dataclasses.replace(base, **changes) if changes else base


# ---------------------------------------------------------------------- world-model fields
def model_field_classes() -> dict[str, list[str]]:
    """Every world-model config field with a flag, and the families that read it."""
    from loopwm.registry import MODEL_REGISTRY

    fields: dict[str, list[str]] = {}
    for name, family in MODEL_REGISTRY.items():
        for field in dataclasses.fields(family.cls.config_class):
            if field.name not in ENV_FIELDS:
                fields.setdefault(field.name, []).append(name)
    return fields


def add_model_arguments(
    parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None
) -> None:
    """``--wm.FIELD`` for every field of every registered family's config, and ``--set``.
    ``defaults``: values the command lays over every preset (the agent's
    ``model_overrides``), shown in place of the presets' values."""
    from loopwm.models import MODEL_CHOICES, model_family

    group = parser.add_argument_group(
        "world model (--wm.FIELD VALUE; the default is the chosen --preset's value)"
    )
    for name, families in model_field_classes().items():
        config_class = model_family(families[0]).cls.config_class
        field = config_class.__dataclass_fields__[name]
        kind = typing.get_type_hints(config_class)[name]
        presets = []
        for preset in PRESET_NAMES:
            value = {**MODEL_PRESETS[preset], **config_class.PRESETS.get(preset, {})}.get(
                name, field.default
            )
            presets.append(f"{preset} {value!r}")
        shown = f"default by preset: {', '.join(presets)}"
        if defaults and name in defaults:
            shown = f"default: {defaults[name]!r}, for every preset"
        only = "" if len(families) == len(MODEL_CHOICES) else f"[{', '.join(families)}] "
        doc = field_docs(config_class).get(name, "")
        choices = field.metadata.get("choices")
        group.add_argument(
            _flag(WM_PREFIX + name),
            dest=WM_PREFIX + name,
            type=_parser_for(kind),
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else _metavar(kind),
            help=_escape(f"{only}{doc} ({shown})"),
        )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the same as --wm.KEY VALUE, e.g. --set c_max=0.95 (repeatable)",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The world-model fields given with ``--wm.FIELD`` or ``--set KEY=VALUE``, checked:
    a field no world model has, or one the env decides, is an error naming it."""
    overrides = {
        key[len(WM_PREFIX) :]: value
        for key, value in vars(args).items()
        if key.startswith(WM_PREFIX)
    }
    for item in getattr(args, "set", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    _check_model_overrides(overrides)
    return overrides


def _check_model_overrides(overrides: dict[str, Any]) -> None:
    """Fail early, naming the flag, for a field no world model has."""
    from_env = sorted(set(overrides) & set(ENV_FIELDS))
    if from_env:
        raise ConfigError(f"{from_env} come from the env's spaces and cannot be set")
    known = set(model_field_classes())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"no world model has the field(s) {unknown}; see --help for the --wm.* flags"
        )
