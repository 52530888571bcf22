"""Small building blocks: MLPs, symlog, activations, exact spectral norms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from loopwm.errors import ConfigError


def adam(
    params, *, lr: float, device: torch.device, weight_decay: float = 0.0, eps: float = 1e-8
) -> torch.optim.Optimizer:
    """AdamW (Adam when ``weight_decay`` is 0), with torch's fused kernel where ``device``
    has one: one operation per step instead of a dozen per parameter tensor, which is most
    of an optimizer step for models this small (CPU: 0.4 ms against 1.7 ms per step of
    the agent's world model)."""
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, fused=fused or None)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``: compresses targets whose scale varies (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh``, computed as ``2 sigmoid(2x) - 1`` on the CPU where no gradient is
    recorded (the loop's solver iterations): torch's CPU tanh costs about 6x its sigmoid,
    and this form 0.26-0.44x of it (84 against 28 microseconds on a (256, 128) float32
    batch here, ``benchmarks/op_costs.py``). The two agree to float rounding (at most 2e-7
    apart in float32)."""
    if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
        return torch.tanh(x)
    return x.mul(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def activation_fn(name: str):
    """The 1-Lipschitz activation ``name`` as a function (see ``config.ACTIVATIONS``)."""
    if name == "tanh":
        return tanh
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


class MemberMLPs(nn.Module):
    """One :func:`mlp` per ensemble member, each with its own weights.

    ``(K, B, in)`` -> ``(K, B, out)``: member ``k`` reads row block ``k`` (its own latents);
    ``(B, in)`` -> ``(K, B, out)``: every member reads the same rows.
    """

    def __init__(self, members: int, in_dim: int, hidden_dim: int, out_dim: int, layers: int):
        super().__init__()
        self.members = nn.ModuleList(
            mlp(in_dim, hidden_dim, out_dim, layers=layers) for _ in range(members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return torch.stack([member(x) for member in self.members])
        return torch.stack([member(xk) for member, xk in zip(self.members, x, strict=True)])


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


def conv_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Resolutions of a conv encoder's stages: halved while both sides are even and > 4
    (64x64: 64, 32, 16, 8, 4)."""
    sizes = [(height, width)]
    while all(n > 4 and n % 2 == 0 for n in sizes[-1]):
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    return sizes


class ConvEncoder(nn.Module):
    """Flat images (N, H*W*C), in the model's standardised units, to vectors (N, out_dim):
    stride-2 4x4 convolutions (``depth`` channels, doubled per stage) with a LayerNorm
    over each stage's activations and SiLU, then a linear map of the flattened features
    and a LayerNorm. The last norm keeps the part all frames share (most pixels never
    change) from growing until it drowns what differs between them."""

    def __init__(self, image_shape: tuple[int, int, int], depth: int, out_dim: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        height, width, channels = self.image_shape
        sizes = conv_sizes(height, width)
        layers: list[nn.Module] = []
        for stage in range(len(sizes) - 1):
            out_channels = depth * 2**stage
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride=2, padding=1),
                nn.GroupNorm(1, out_channels),
                nn.SiLU(),
            ]
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(channels * sizes[-1][0] * sizes[-1][1], out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-1]
        images = obs.reshape(-1, *self.image_shape).permute(0, 3, 1, 2)  # (N, C, H, W)
        features = self.convs(images).flatten(1)
        return self.norm(self.out(features)).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Vectors (..., in_dim) to flat images (..., H*W*C) in standardised units: the
    mirror of :class:`ConvEncoder` (a linear map to the smallest resolution, then
    stride-2 4x4 transposed convolutions)."""

    def __init__(self, in_dim: int, image_shape: tuple[int, int, int], depth: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        height, width, channels = self.image_shape
        sizes = conv_sizes(height, width)
        stages = len(sizes) - 1
        widths = [depth * 2**stage for stage in range(stages)][::-1] + [channels]
        self.start = (widths[0], *sizes[-1])
        self.inp = nn.Linear(in_dim, widths[0] * sizes[-1][0] * sizes[-1][1])
        layers: list[nn.Module] = []
        for stage in range(stages):
            layers.append(nn.ConvTranspose2d(widths[stage], widths[stage + 1], 4, 2, padding=1))
            if stage < stages - 1:
                layers += [nn.GroupNorm(1, widths[stage + 1]), nn.SiLU()]
        self.convs = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        lead = latent.shape[:-1]
        x = self.inp(latent.reshape(-1, latent.shape[-1])).reshape(-1, *self.start)
        if len(self.convs):
            x = self.convs(x)
        return x.permute(0, 2, 3, 1).reshape(*lead, -1)  # (..., H*W*C), channels last
