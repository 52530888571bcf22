"""The shared block iterated by the loop: ``x <- A*x + B u + R(x, u)``.

``A`` is diagonal in ``(0, a_max)``; ``R`` is an MLP with 1-Lipschitz activations and no
normalisation layer, whose matrices acting on ``x`` are spectrally clipped so that

    c = max(A) + prod_i ||W_i||_2  <=  c_max  <  1.

The clip uses exact spectral norms (not power-iteration estimates, which can
under-estimate), so the bound holds for every parameter value the optimiser reaches.
With ``certified=False`` the same block is left unconstrained (``A = exp(-softplus)`` in
``(0, 1)``, free ``R``): the LoopWM paper's variant and the untied-stack baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from loopwm.config import LoopWMConfig
from loopwm.networks import activation_fn, spectral_norm, spectral_norm_exact

# Spectral norms are exact up to float32 rounding; keep this much budget in reserve so the
# float64 certificate also stays below c_max.
_ROUNDING_MARGIN = 1e-4


@dataclass
class BlockWeights:
    """Effective (constrained) weights of one block, computed once per transition."""

    decay: torch.Tensor  # (D,) diagonal A
    inject: torch.Tensor  # (D, E) B
    x_weight: torch.Tensor  # (H, D) first layer of R, x part
    u_weight: torch.Tensor  # (H, E) first layer of R, u part
    u_bias: torch.Tensor  # (H,)
    hidden: list[tuple[torch.Tensor, torch.Tensor]]  # (H, H), (H,) per extra hidden layer
    out_weight: torch.Tensor  # (D, H)
    out_bias: torch.Tensor  # (D,)
    contraction: float  # max(A) + product of x-path spectral norms (nan when uncertified)


class LoopBlock(nn.Module):
    """One block ``x <- A*x + B u + R(x, u)``; see the module docstring."""

    def __init__(self, config: LoopWMConfig, *, certified: bool = True) -> None:
        super().__init__()
        self.config = config
        self.certified = certified
        dim, inj, hid = config.latent_dim, config.inject_dim, config.block_hidden
        self.decay_logit = nn.Parameter(torch.zeros(dim))
        self.inject = nn.Linear(inj, dim, bias=False)
        self.x_in = nn.Linear(dim, hid, bias=False)
        self.u_in = nn.Linear(inj, hid)
        self.hidden = nn.ModuleList(nn.Linear(hid, hid) for _ in range(config.block_layers - 1))
        self.out = nn.Linear(hid, dim)
        self.act = activation_fn(config.activation)
        # Per-matrix spectral budget on the x path: the product of the norms of the
        # config.block_layers + 1 matrices is at most c_max - a_max.
        budget = (config.c_max - config.a_max) * (1.0 - _ROUNDING_MARGIN)
        self.matrix_budget = budget ** (1.0 / (config.block_layers + 1))
        # One cache of the effective weights. Outside shared_weights() it holds a no-grad
        # computation keyed by the parameters' versions (an optimizer step bumps them);
        # inside, the graph-carrying weights of the enclosing rollout, pinned.
        self._cache: BlockWeights | None = None
        self._cache_key: tuple | None = None
        self._pinned = False

    def x_matrices(self) -> list[torch.Tensor]:
        """Raw matrices on the x path of ``R``, in order."""
        return [self.x_in.weight, *(layer.weight for layer in self.hidden), self.out.weight]

    def _clip(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale ``weight`` down to spectral norm ``matrix_budget`` if it exceeds it."""
        sigma = spectral_norm(weight)
        scale = self.matrix_budget / torch.clamp(sigma, min=self.matrix_budget)
        return weight * scale, sigma * scale

    def _parameter_key(self) -> tuple:
        # ``_version`` is torch's in-place modification counter: the only way to notice an
        # optimizer step without hashing the values.
        return tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())

    def weights(self) -> BlockWeights:
        """Effective weights: pinned inside :meth:`shared_weights`; otherwise cached while
        gradients are off and parameters unchanged, so imagined rollouts pay for the
        spectral norms once, not once per step."""
        if self._pinned:
            return self._cache
        if torch.is_grad_enabled():
            return self._compute_weights()
        key = self._parameter_key()
        if key != self._cache_key:
            self._cache, self._cache_key = self._compute_weights(), key
        return self._cache

    @contextmanager
    def shared_weights(self) -> Iterator[None]:
        """Compute the effective weights once and reuse them (graph included) for every
        transition inside the block, e.g. the whole open-loop horizon of one loss."""
        if self._pinned:  # nested: the outer block already pinned them
            yield
            return
        weights = self.weights()
        # A graph-carrying computation must not be served later as a no-grad cache entry.
        self._cache, self._cache_key, self._pinned = weights, None, True
        if not torch.is_grad_enabled():
            self._cache_key = self._parameter_key()
        try:
            yield
        finally:
            self._pinned = False
            if self._cache_key is None:
                self._cache = None

    def _compute_weights(self) -> BlockWeights:
        if self.certified:
            decay = self.config.a_max * torch.sigmoid(self.decay_logit)
            clipped = [self._clip(w) for w in self.x_matrices()]
            mats = [w for w, _ in clipped]
            norms = [float(s.detach()) for _, s in clipped]
            contraction = float(decay.detach().max()) + math.prod(norms)
        else:
            decay = torch.exp(-nn.functional.softplus(self.decay_logit))
            mats = self.x_matrices()
            contraction = math.nan  # uncertified: see certificate() for the (loose) bound
        return BlockWeights(
            decay=decay,
            inject=self.inject.weight,
            x_weight=mats[0],
            u_weight=self.u_in.weight,
            u_bias=self.u_in.bias,
            hidden=[(m, layer.bias) for m, layer in zip(mats[1:-1], self.hidden, strict=True)],
            out_weight=mats[-1],
            out_bias=self.out.bias,
            contraction=contraction,
        )

    def project(self, u: torch.Tensor, w: BlockWeights) -> torch.Tensor:
        """The loop-invariant part of an iteration, computed once per transition.

        Returns (B, D + H): ``[B u + b_out, W_u u + b_u]``; (K, B, D + H) for the stacked
        weights of an ensemble (:class:`BlockEnsemble`).
        """
        return project(u, w)

    def iterate(self, w: BlockWeights, x: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """One iteration ``A*x + B u + R(x, u)`` on (B, D) latents and (B, D + H) projections
        (or (K, B, ...) for the stacked weights of an ensemble)."""
        return iterate(w, x, projected, self.act)

    def certificate(self) -> tuple[float, float]:
        """``(c, M)`` in float64 from exact SVDs: the contraction factor, and ``M`` with
        ``||B u + R(0, u)|| <= M`` for every ``||u|| <= sqrt(inject_dim)`` (the LayerNorm
        output range), so that every iterate satisfies ``||x|| <= max(||x0||, M/(1-c))``.
        """
        with torch.no_grad():
            w = self._compute_weights()
            decay_max = float(w.decay.double().max())
            mats = [w.x_weight, *(m for m, _ in w.hidden), w.out_weight]
            contraction = decay_max + math.prod(spectral_norm_exact(m) for m in mats)
            u_norm = math.sqrt(self.config.inject_dim)
            z_norm = spectral_norm_exact(w.u_weight) * u_norm + float(w.u_bias.double().norm())
            bounded_act = self.config.activation == "tanh"
            hid_cap = math.sqrt(self.config.block_hidden)
            if bounded_act:
                z_norm = min(z_norm, hid_cap)
            for m, b in w.hidden:
                z_norm = spectral_norm_exact(m) * z_norm + float(b.double().norm())
                if bounded_act:
                    z_norm = min(z_norm, hid_cap)
            drive = (
                spectral_norm_exact(w.inject) * u_norm
                + spectral_norm_exact(w.out_weight) * z_norm
                + float(w.out_bias.double().norm())
            )
        return contraction, drive


def project(u: torch.Tensor, w: BlockWeights) -> torch.Tensor:
    """``[B u + b_out, W_u u + b_u]`` for (B, E) inputs: (B, D + H), or (K, B, D + H) with
    weights stacked over ``K`` members (the input is shared by the members)."""
    if w.decay.ndim == 1:
        bu = u @ w.inject.T + w.out_bias  # (B, D)
        zu = u @ w.u_weight.T + w.u_bias  # (B, H)
    else:
        bu = torch.matmul(u, w.inject.mT) + w.out_bias.unsqueeze(-2)  # (K, B, D)
        zu = torch.matmul(u, w.u_weight.mT) + w.u_bias.unsqueeze(-2)  # (K, B, H)
    return torch.cat([bu, zu], dim=-1)


def iterate(w: BlockWeights, x: torch.Tensor, projected: torch.Tensor, act) -> torch.Tensor:
    """One iteration ``A*x + B u + R(x, u)``: (B, D) latents with one block's weights, or
    (K, B, D) latents with ``K`` members' stacked weights (one batched matmul per layer)."""
    dim = x.shape[-1]
    bu, zu = projected[..., :dim], projected[..., dim:]
    # addmm/addcmul fuse the adds into the matmuls: this is the hot loop of imagination.
    if x.ndim == 2:
        z = act(torch.addmm(zu, x, w.x_weight.T))  # (B, H)
        for weight, bias in w.hidden:
            z = act(torch.addmm(bias, z, weight.T))  # (B, H)
        return torch.addmm(torch.addcmul(bu, w.decay, x), z, w.out_weight.T)  # (B, D)
    z = act(torch.baddbmm(zu, x, w.x_weight.mT))  # (K, B, H)
    for weight, bias in w.hidden:
        z = act(torch.baddbmm(bias.unsqueeze(-2), z, weight.mT))  # (K, B, H)
    return torch.baddbmm(torch.addcmul(bu, w.decay.unsqueeze(-2), x), z, w.out_weight.mT)


def stack_weights(parts: list[BlockWeights]) -> BlockWeights:
    """The members' effective weights stacked along a new leading dimension; the
    contraction is the largest member's (each member keeps its own certificate)."""
    return BlockWeights(
        decay=torch.stack([p.decay for p in parts]),
        inject=torch.stack([p.inject for p in parts]),
        x_weight=torch.stack([p.x_weight for p in parts]),
        u_weight=torch.stack([p.u_weight for p in parts]),
        u_bias=torch.stack([p.u_bias for p in parts]),
        hidden=[
            (
                torch.stack([p.hidden[i][0] for p in parts]),
                torch.stack([p.hidden[i][1] for p in parts]),
            )
            for i in range(len(parts[0].hidden))
        ],
        out_weight=torch.stack([p.out_weight for p in parts]),
        out_bias=torch.stack([p.out_bias for p in parts]),
        contraction=max(p.contraction for p in parts),
    )


class BlockEnsemble(nn.Module):
    """``K`` independent :class:`LoopBlock` members run as one batched block.

    Same interface as :class:`LoopBlock`; :meth:`weights` stacks the members' effective
    weights, so :func:`project` and :func:`iterate` work on (K, B, ...) tensors with one
    batched matmul per layer instead of ``K`` sequential passes. Each member is clipped to
    its own certificate; :meth:`certificate` reports the largest ``c`` and ``M``.
    """

    def __init__(self, config: LoopWMConfig, members: int, *, certified: bool = True) -> None:
        super().__init__()
        self.members = nn.ModuleList(LoopBlock(config, certified=certified) for _ in range(members))
        self.act = self.members[0].act
        self._stacked: BlockWeights | None = None
        self._stacked_from: list[BlockWeights] = []  # held, so their ids cannot be reused

    def weights(self) -> BlockWeights:
        parts = [m.weights() for m in self.members]
        if torch.is_grad_enabled() and not self.members[0]._pinned:
            return stack_weights(parts)
        # the members serve cached (or pinned) weights: stack them once per new cache
        if len(parts) != len(self._stacked_from) or any(
            a is not b for a, b in zip(parts, self._stacked_from, strict=False)
        ):
            self._stacked, self._stacked_from = stack_weights(parts), parts
        return self._stacked

    @contextmanager
    def shared_weights(self) -> Iterator[None]:
        with ExitStack() as stack:
            for member in self.members:
                stack.enter_context(member.shared_weights())
            try:
                yield
            finally:
                self._stacked, self._stacked_from = None, []

    def project(self, u: torch.Tensor, w: BlockWeights) -> torch.Tensor:
        return project(u, w)

    def iterate(self, w: BlockWeights, x: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        return iterate(w, x, projected, self.act)

    def certificate(self) -> tuple[float, float]:
        """The largest ``(c, M)`` over the members (see :meth:`LoopBlock.certificate`)."""
        certs = [m.certificate() for m in self.members]
        return max(c for c, _ in certs), max(m for _, m in certs)


def make_block(config: LoopWMConfig, *, certified: bool = True) -> LoopBlock | BlockEnsemble:
    """One block, or an ensemble of ``config.ensemble`` members when it is above 1."""
    if config.ensemble == 1:
        return LoopBlock(config, certified=certified)
    return BlockEnsemble(config, config.ensemble, certified=certified)
