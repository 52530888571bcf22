"""Small building blocks: MLPs, symlog, activations, exact spectral norms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from loopwm.errors import ConfigError


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``: compresses targets whose scale varies (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def activation_fn(name: str):
    """The 1-Lipschitz activation ``name`` as a function (see ``config.ACTIVATIONS``)."""
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return F.relu
    if name == "leaky_relu":
        return F.leaky_relu
    raise ConfigError(f"unknown activation {name!r}")


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` hidden layers of Linear -> LayerNorm -> SiLU, then a Linear output.

    Used only outside the loop (encoder, decoder, prelude, heads), where no Lipschitz
    bound is needed.
    """
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        modules += [nn.Linear(dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*modules)


def spectral_norm(weight: torch.Tensor) -> torch.Tensor:
    """Exact largest singular value of a matrix, differentiable.

    Computed as the square root of the top eigenvalue of the smaller Gram matrix, which
    is several times faster than an SVD on CPU and exact up to float rounding (unlike a
    power-iteration estimate, which only bounds it from below).
    """
    rows, cols = weight.shape
    gram = weight @ weight.T if rows <= cols else weight.T @ weight
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0).sqrt()


def spectral_norm_exact(weight: torch.Tensor) -> float:
    """Largest singular value in float64 via SVD: the number certificates are built on."""
    return float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
