"""Hourglass networks (thesis Fig. 4.1, the improved U-Net-like hourglass of Fig. 5.6).

:class:`HourGlass` is the recursive hourglass of Newell et al. as used by FAN, with the official
face-alignment module tree (``b1_L`` upper branch, ``b2_L`` after pooling, ``b2_plus_1`` at the
lowest level, ``b3_L`` before nearest-neighbour upsampling; ``up1 + up2``), so official checkpoints
load into it. Stacking (Fig. 4.2, 5.9) lives in :mod:`fa_lib.models.fan`.

:class:`ImprovedHourGlass` (Fig. 5.6, 5.7.1) removes the residual blocks of the upper (skip)
branches and merges by concatenation; the module right after each merge reads ``2 * features``
channels. Its output has ``2 * features`` channels (``out_channels``), so the module after the
hourglass must accept that many.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["pool2x", "HourGlass", "ImprovedHourGlass", "make_hourglass", "HOURGLASSES"]

POOLINGS = ("avg", "max")


def pool2x(x: torch.Tensor, pooling: str) -> torch.Tensor:
    """2x2, stride-2 pooling: ``"avg"`` (the PyTorch port and its weights) or ``"max"`` (the thesis's
    Torch7 models, Table 5.8)."""
    if pooling == "avg":
        return F.avg_pool2d(x, 2, stride=2)
    if pooling == "max":
        return F.max_pool2d(x, 2, stride=2)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def _check_input(x: torch.Tensor, depth: int, channels: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"hourglass expects (N, {channels}, H, W), got {tuple(x.shape)}")
    if x.shape[-1] % 2 ** depth or x.shape[-2] % 2 ** depth:
        raise ValueError(f"hourglass of depth {depth} needs H and W divisible by {2 ** depth}, "
                         f"got {tuple(x.shape[-2:])}")


class _Hourglass(nn.Module):
    """What both hourglasses share: arguments, checks, the recursion's entry point. Subclasses
    register their modules in ``_add_level`` and compute level L in ``_forward``."""

    def __init__(self, depth: int, features: int, block: Callable[..., nn.Module], pooling: str,
                 out_channels: int):
        super().__init__()
        if depth < 1:
            raise ValueError(f"hourglass depth must be >= 1, got {depth}")
        if features < 1:
            raise ValueError(f"features must be positive, got {features}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.depth = depth
        self.features = features
        self.out_channels = out_channels
        self.pooling = pooling
        self._add_level(depth, block)

    def _add_level(self, level: int, block) -> None:
        raise NotImplementedError

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.depth, self.features)
        return self._forward(self.depth, x)


class HourGlass(_Hourglass):
    """Recursive hourglass, ``depth`` levels, ``features`` channels everywhere (thesis Fig. 4.1).

    ``block(in_ch, out_ch)`` builds each residual module (13 for depth 4). Level L:
    ``up1 = b1_L(x)``; ``low = b3_L(inner(b2_L(pool(x))))`` with ``inner`` the level L-1 hourglass,
    or ``b2_plus_1`` at L = 1; output ``up1 + upsample_nearest_2x(low)``.
    """

    #: add the upsampled lower branch into ``up1`` in place (inference-only subclasses: no autograd)
    add_in_place = False

    def __init__(self, depth: int, features: int, block: Callable[..., nn.Module], pooling: str = "avg"):
        super().__init__(depth, features, block, pooling, out_channels=features)

    def _add_level(self, level: int, block) -> None:
        # Registration order follows the official module tree (b1_4, b2_4, b1_3, ..., b3_1, ..., b3_4).
        self.add_module(f"b1_{level}", block(self.features, self.features))
        self.add_module(f"b2_{level}", block(self.features, self.features))
        if level > 1:
            self._add_level(level - 1, block)
        else:
            self.add_module("b2_plus_1", block(self.features, self.features))
        self.add_module(f"b3_{level}", block(self.features, self.features))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(pool2x(x, self.pooling))
        low = self._forward(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = F.interpolate(getattr(self, f"b3_{level}")(low), scale_factor=2, mode="nearest")
        return up1.add_(low) if self.add_in_place else up1 + low

    def direct_block_edges(self) -> list[tuple[str, str]]:
        """The (producer, consumer) module names where one residual module's output is the next one's input
        as it is, unchanged in between: ``b2_L`` feeds the level below's ``b1_{L-1}`` (and its pooling), and
        at the bottom ``b2_1`` -> ``b2_plus_1`` -> ``b3_1``. (``b3_L`` reads the level below's sum, not a
        module's output.) Packed inference uses them to pack a block's output for its consumer."""
        edges = [(f"b2_{level}", f"b1_{level - 1}") for level in range(self.depth, 1, -1)]
        return edges + [("b2_1", "b2_plus_1"), ("b2_plus_1", "b3_1")]


class ImprovedHourGlass(_Hourglass):
    """U-Net-like hourglass of Fig. 5.6 (thesis 5.7.1).

    The upper branches carry the input unchanged (no ``b1_L`` blocks) and are concatenated with
    the upsampled lower branch: level L returns ``cat(x, upsample(b3_L(...)))`` with
    ``2 * features`` channels. The modules right after a merge (``b3_{L+1}`` here, and the module
    after the hourglass) take ``2 * features`` inputs and are built with ``shortcut="fold"``
    (residual = sum of the two halves = the standard hourglass's ``up1 + up2``, no parameters).
    With the hierarchical block this gives 5.81M parameters for the 1-stack network, the thesis's
    5.8M (Table 5.14); a 1x1 projection shortcut would give 6.33M.
    """

    def __init__(self, depth: int, features: int, block: Callable[..., nn.Module], pooling: str = "max"):
        super().__init__(depth, features, block, pooling, out_channels=2 * features)

    def _add_level(self, level: int, block) -> None:
        f = self.features
        self.add_module(f"b2_{level}", block(f, f))
        if level > 1:
            self._add_level(level - 1, block)
            self.add_module(f"b3_{level}", block(2 * f, f, shortcut="fold"))
        else:
            self.add_module("b2_plus_1", block(f, f))
            self.add_module(f"b3_{level}", block(f, f))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        low = getattr(self, f"b2_{level}")(pool2x(x, self.pooling))
        low = self._forward(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        return torch.cat([x, F.interpolate(low, scale_factor=2, mode="nearest")], dim=1)


HOURGLASSES = {"standard": HourGlass, "improved": ImprovedHourGlass}


def make_hourglass(kind: str, depth: int, features: int, block, pooling: str) -> nn.Module:
    """``kind`` = ``"standard"`` (Fig. 4.1) or ``"improved"`` (Fig. 5.6)."""
    if kind not in HOURGLASSES:
        raise ValueError(f"hourglass must be one of {sorted(HOURGLASSES)}, got {kind!r}")
    return HOURGLASSES[kind](depth, features, block, pooling)
