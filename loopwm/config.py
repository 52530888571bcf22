"""Frozen configuration for loopwm world models and their training.

:class:`LoopWMConfig` holds what every world model in the package shares (sizes, the
block, the loop's halting and training settings); a family with settings of its own
subclasses it next to its model class (``MLPConfig`` in :mod:`loopwm.baselines`,
``GatedLoopWMConfig`` in :mod:`loopwm.looped`). Configs are never mutated after they are
built: derive a new one with :meth:`LoopWMConfig.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loopwm.checks import check_choice, check_fraction, check_positive, check_positive_int
from loopwm.errors import ConfigError

ACTIVATIONS = ("tanh", "relu", "leaky_relu")  # 1-Lipschitz: the contraction proof needs it
GRAD_MODES = ("truncated", "phantom")
HALTING_MODES = ("certified", "fixed")
WARM_STARTS = ("latent", "linear", "extrapolate")


@dataclass(frozen=True)
class LoopWMConfig:
    """Configuration of a looped world model (and the settings every baseline shares).

    Only ``obs_dim`` and ``action_dim`` are required; read them from the environment's
    ``observation_space.shape[0]`` and ``action_space.shape[0]``.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    """A family's own fields per preset, laid over :data:`MODEL_PRESETS` (subclasses)."""

    obs_dim: int
    """Size of the (flat, Box) observation vector."""
    action_dim: int
    """Size of the (flat, Box) action vector."""
    image_shape: tuple[int, ...] = ()
    """``(H, W, C)`` of image observations (``uint8`` pixels, ``obs_dim`` = H*W*C), read
    from the env like ``obs_dim``: the encoder and decoder become convolutional. ``()``
    for flat observations."""
    obs_symlog: bool = False
    """Squash the standardised observations with ``symlog`` (DreamerV3), in the encoder's
    input and the decoder's target: values far outside the statistics the scaling came
    from (a cart at the track's end, when the statistics saw it near the centre) stay a
    few units large instead of tens. Errors are then in symlog-standardised units. Flat
    observations only: images (bounded ``uint8`` pixels) are never squashed."""
    conv_depth: int = 32
    """Channels of the first conv layer of an image encoder (doubled per halving of the
    resolution, down to 4x4) and of the mirrored decoder; unused for flat observations."""

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
    activation: str = field(default="tanh", metadata={"choices": ACTIVATIONS})
    """Activation inside the loop, one of ``ACTIVATIONS`` (all 1-Lipschitz)."""
    ensemble: int = 1
    """Members of the transition ensemble: K blocks (K GRU cells for ``gru``) over one
    shared encoder, prelude, decoder and heads, run as one batched pass. With K >= 2,
    :meth:`~loopwm.WorldModel.step` reports the members' disagreement as ``uncertainty``."""

    a_max: float = 0.5
    """Upper bound of the diagonal decay ``A`` in ``x <- A*x + B u + R(x, u)``."""
    c_max: float = 0.9
    """Certified contraction factor the parametrisation never exceeds (``a_max < c_max < 1``)."""

    tol: float = 1e-3
    """Halting tolerance: a sample stops once its certified distance to the fixed point,
    ``c/(1-c) * ||x^k - x^{k-1}||``, is at most ``tol``."""
    max_iters: int = 32
    """Iteration cap at inference (override per call with ``step(..., max_iters=)``)."""
    halting: str = field(default="certified", metadata={"choices": HALTING_MODES})
    """``certified`` halts per sample on the bound above; ``fixed`` always runs ``max_iters``
    (the ablation for adaptive compute)."""
    warm_start: str = field(default="latent", metadata={"choices": WARM_STARTS})
    """Where each transition's loop starts: ``latent`` at ``h_t``; ``linear`` at the fixed
    point of the block's linear part, ``(B u + b) / (1 - A)``, so that the iterations count
    what the nonlinear part adds; ``extrapolate`` at ``2 h_t - h_{t-1}``, the latent moved
    on as it moved in the last transition (``h_t`` where no ``h_{t-1}`` is given), so that
    the iterations count how much the motion changes, as a contact changes it. The
    certified fixed point is the same from any start; only the iterations spent reaching
    it differ."""

    train_iters_mean: float = 8.0
    """Mean iteration count sampled per training batch (Poisson-lognormal)."""
    train_iters_sigma: float = 0.5
    """Log-normal spread of the sampled training iteration count."""
    grad_iters: int = 4
    """Tracked iterations gradients flow through: re-run from the solved fixed point with
    ``grad_mode="phantom"`` (the default), the last ones of the sampled count with
    ``"truncated"``. Imagination tracks one (it reproduces the solved latent)."""
    grad_mode: str = field(default="phantom", metadata={"choices": GRAD_MODES})
    """``phantom`` (default): solve with halting and no gradients, then ``grad_iters``
    tracked iterations from the solution (Jacobian-free / phantom gradient): training sees
    the same fixed point inference uses. ``truncated``: an iteration count sampled per batch,
    gradients through its last ``grad_iters`` iterations. With ``halting="fixed"`` both
    train with exactly ``max_iters`` iterations, gradients through the last ``grad_iters``."""

    def __post_init__(self) -> None:
        for name in (
            "obs_dim",
            "action_dim",
            "latent_dim",
            "hidden_dim",
            "inject_dim",
            "block_hidden",
            "block_layers",
            "ensemble",
            "conv_depth",
            "max_iters",
            "grad_iters",
        ):
            check_positive_int(name, getattr(self, name))
        for name in ("tol", "train_iters_mean", "train_iters_sigma"):
            check_positive(name, getattr(self, name))
        self._check_image_shape()
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("grad_mode", self.grad_mode, GRAD_MODES)
        check_choice("halting", self.halting, HALTING_MODES)
        check_choice("warm_start", self.warm_start, WARM_STARTS)
        if not 0.0 < self.a_max < self.c_max < 1.0:
            raise ConfigError(
                f"need 0 < a_max < c_max < 1 for a contraction, got a_max={self.a_max}, "
                f"c_max={self.c_max}"
            )

    def _check_image_shape(self) -> None:
        shape = self.image_shape
        if isinstance(shape, list):  # read back from JSON
            object.__setattr__(self, "image_shape", shape := tuple(shape))
        if shape == ():
            return
        valid = isinstance(shape, tuple) and len(shape) == 3
        if not valid or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            raise ConfigError(f"image_shape must be (H, W, C) integers or (), got {shape!r}")
        height, width, channels = shape
        if min(height, width) < 8 or channels < 1:
            raise ConfigError(f"image_shape needs H, W >= 8 and C >= 1, got {shape}")
        if height * width * channels != self.obs_dim:
            raise ConfigError(
                f"image_shape {shape} holds {height * width * channels} values, but obs_dim "
                f"is {self.obs_dim}"
            )

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
            raise ConfigError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        obs_dim: int,
        action_dim: int,
        image_shape: tuple[int, ...] = (),
        **overrides: Any,
    ) -> LoopWMConfig:
        """A named preset (``tiny``, ``small``, ``default``, ``large``) for the given sizes.

        The preset's shared sizes come from :data:`MODEL_PRESETS`, a family's own fields
        from its class's ``PRESETS``; ``overrides`` win over both.

        >>> LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1).latent_dim
        16
        """
        check_choice("preset", name, PRESET_NAMES)
        fields = {
            **MODEL_PRESETS[name],
            **cls.PRESETS.get(name, {}),
            **overrides,
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "image_shape": tuple(image_shape),
        }
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
        conv_depth=4,
    ),
    "small": dict(latent_dim=64, hidden_dim=128, inject_dim=64, block_hidden=128, conv_depth=16),
    "default": {},
    "large": dict(latent_dim=256, hidden_dim=512, inject_dim=256, block_hidden=512, block_layers=2),
}
PRESET_NAMES = tuple(MODEL_PRESETS)  # tiny (tests), small (the agent's), default, large


LOSS_WEIGHTS = {"obs": 1.0, "reward": 1.0, "cont": 1.0, "consistency": 1.0}
"""The world-model loss terms and their default weights (``FitConfig.loss_weights``)."""


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
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(LOSS_WEIGHTS))
    """Weights of the loss terms (next observation, reward, continuation, latent
    consistency); a term not given keeps weight 1. ``obs`` weighs the reconstruction of
    the first observation too. ``{"obs": 0}`` trains decoder-free, as TD-MPC2 does: the
    decoder is neither run nor trained, and the model refuses to decode
    (``WorldModel.decodes``)."""
    terminal_weight: float = 1.0
    """Weight of the continuation loss on terminal transitions, relative to the others'
    (1: the same). They are rare (one per episode) but all the world model learns of how
    episodes end."""
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
            check_positive_int(name, getattr(self, name))
        for name in ("lr", "grad_clip", "terminal_weight"):
            check_positive(name, getattr(self, name))
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        check_fraction("horizon_discount", self.horizon_discount)
        unknown = set(self.loss_weights) - set(LOSS_WEIGHTS)
        if unknown:
            raise ConfigError(
                f"unknown loss_weights keys: {sorted(unknown)} (known: {', '.join(LOSS_WEIGHTS)})"
            )
        for key, value in self.loss_weights.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"loss_weights[{key!r}] must be a number >= 0, got {value!r}")
        # the terms not given keep their weight (a frozen dataclass: set once, here)
        object.__setattr__(self, "loss_weights", {**LOSS_WEIGHTS, **self.loss_weights})
