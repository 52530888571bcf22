"""Frozen configuration for loopwm world models and their training.

One :class:`LoopWMConfig` describes every world model in the package (LoopWM and the
baselines behind the same interface); fields that only one model reads say so. Configs
are never mutated after they are built: derive a new one with :meth:`LoopWMConfig.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("tanh", "relu", "leaky_relu")  # 1-Lipschitz: the contraction proof needs it
GRAD_MODES = ("truncated", "phantom")
HALTING_MODES = ("certified", "fixed")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class LoopWMConfig:
    """Configuration of a looped world model (and of the baselines sharing its interface).

    Only ``obs_dim`` and ``action_dim`` are required; read them from the environment's
    ``observation_space.shape[0]`` and ``action_space.shape[0]``.
    """

    obs_dim: int
    """Size of the (flat, Box) observation vector."""
    action_dim: int
    """Size of the (flat, Box) action vector."""

    latent_dim: int = 128
    """Size of the latent state ``h`` the loop iterates on."""
    hidden_dim: int = 256
    """Width of the encoder, decoder, prelude and head MLPs (outside the loop)."""
    inject_dim: int = 128
    """Size of the injected input ``u = prelude(h, a)``, re-injected at every iteration."""
    block_hidden: int = 256
    """Width of the hidden layers of the shared block ``R(x, u)``."""
    block_layers: int = 1
    """Hidden layers in ``R``; every matrix that touches ``x`` is spectrally constrained."""
    activation: str = "tanh"
    """Activation inside the loop, one of ``ACTIVATIONS`` (all 1-Lipschitz)."""

    a_max: float = 0.5
    """Upper bound of the diagonal decay ``A`` in ``x <- A*x + B u + R(x, u)``."""
    c_max: float = 0.9
    """Certified contraction factor the parametrisation never exceeds (``a_max < c_max < 1``)."""

    tol: float = 1e-3
    """Halting tolerance: a sample stops once its certified distance to the fixed point,
    ``c/(1-c) * ||x^k - x^{k-1}||``, is at most ``tol``."""
    max_iters: int = 32
    """Iteration cap at inference (override per call with ``step(..., max_iters=)``)."""
    halting: str = "certified"
    """``certified`` halts per sample on the bound above; ``fixed`` always runs ``max_iters``
    (the ablation for adaptive compute)."""

    train_iters_mean: float = 8.0
    """Mean iteration count sampled per training batch (Poisson-lognormal)."""
    train_iters_sigma: float = 0.5
    """Log-normal spread of the sampled training iteration count."""
    grad_iters: int = 4
    """Iterations at the end of the loop that gradients flow through (truncated backprop)."""
    grad_mode: str = "phantom"
    """``phantom`` (default): solve with halting and no gradients, then ``grad_iters``
    tracked iterations from the solution (Jacobian-free / phantom gradient): training sees
    the same fixed point inference uses. ``truncated``: an iteration count sampled per batch,
    gradients through its last ``grad_iters`` iterations. With ``halting="fixed"`` both
    train with exactly ``max_iters`` iterations, gradients through the last ``grad_iters``."""

    mlp_depth: int = 8
    """(``mlp`` baseline only) number of untied blocks in the stack."""
    gate_threshold: float = 0.5
    """(``loopwm-gate`` baseline only) halting probability at which a sample stops."""
    gate_tol: float = 1e-2
    """(``loopwm-gate`` baseline only) relative latent change the gate learns to call converged."""

    def __post_init__(self) -> None:
        for name in (
            "obs_dim",
            "action_dim",
            "latent_dim",
            "hidden_dim",
            "inject_dim",
            "block_hidden",
            "block_layers",
            "max_iters",
            "grad_iters",
            "mlp_depth",
        ):
            _check_positive_int(name, getattr(self, name))
        for name in ("tol", "train_iters_mean", "train_iters_sigma", "gate_tol"):
            _check_positive(name, getattr(self, name))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {self.grad_mode!r}")
        if self.halting not in HALTING_MODES:
            raise ValueError(f"halting must be one of {HALTING_MODES}, got {self.halting!r}")
        if not 0.0 < self.a_max < self.c_max < 1.0:
            raise ValueError(
                f"need 0 < a_max < c_max < 1 for a contraction, got a_max={self.a_max}, "
                f"c_max={self.c_max}"
            )
        if not 0.0 < self.gate_threshold < 1.0:
            raise ValueError(f"gate_threshold must be in (0, 1), got {self.gate_threshold}")

    def replace(self, **changes: Any) -> LoopWMConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopWMConfig:
        """Build from a dict, rejecting unknown keys (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LoopWMConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, *, obs_dim: int, action_dim: int, **overrides: Any) -> LoopWMConfig:
        """A named preset (``tiny``, ``default``, ``large``) for the given sizes.

        >>> LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1).latent_dim
        16
        """
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(MODEL_PRESETS)}")
        fields = {**MODEL_PRESETS[name], **overrides, "obs_dim": obs_dim, "action_dim": action_dim}
        return cls.from_dict(fields)


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        latent_dim=16,
        hidden_dim=32,
        inject_dim=16,
        block_hidden=32,
        max_iters=16,
        train_iters_mean=4.0,
        grad_iters=2,
        mlp_depth=4,
    ),
    "small": dict(latent_dim=64, hidden_dim=128, inject_dim=64, block_hidden=128),
    "default": {},
    "large": dict(latent_dim=256, hidden_dim=512, inject_dim=256, block_hidden=512, block_layers=2),
}


@dataclass(frozen=True)
class FitConfig:
    """How ``loopwm fit`` trains a world model on stored transitions."""

    steps: int = 2000
    """Gradient steps."""
    batch_size: int = 64
    """Sequences per batch."""
    horizon: int = 8
    """Open-loop training horizon (environment steps imagined per sequence)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 10.0
    """Global gradient-norm clip."""
    horizon_discount: float = 0.8
    """Weight ``rho**k`` of the loss ``k`` steps into the open-loop rollout."""
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"obs": 1.0, "reward": 1.0, "cont": 1.0, "consistency": 1.0}
    )
    """Weights of the loss terms (next observation, reward, continuation, latent consistency)."""
    eval_horizon: int = 10
    """K of the held-out K-step open-loop error."""
    holdout_fraction: float = 0.2
    """Fraction of episodes held out for evaluation (whole episodes, never transitions)."""
    eval_every: int = 500
    """Evaluate on held-out episodes every this many steps (0: only at the end)."""
    seed: int = 0
    """Seed of parameters, batches and the held-out split."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "horizon", "eval_horizon"):
            _check_positive_int(name, getattr(self, name))
        for name in ("lr", "grad_clip"):
            _check_positive(name, getattr(self, name))
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 < self.horizon_discount <= 1.0:
            raise ValueError(f"horizon_discount must be in (0, 1], got {self.horizon_discount}")
        unknown = set(self.loss_weights) - {"obs", "reward", "cont", "consistency"}
        if unknown:
            raise ValueError(f"unknown loss_weights keys: {sorted(unknown)}")
