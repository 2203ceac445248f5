"""Residual blocks of chapters 4 and 5 (thesis Fig. 5.1, 5.3 (a)-(e), 5.7, 5.8).

Every block is pre-activation (BN -> activation -> conv, thesis 5.1) and takes ``binary``: the
binary version replaces each BN -> ReLU -> conv by BN -> sign -> binary conv (``fa_lib.models.binary``)
and is otherwise the same module tree, so binary and real twins share parameter counts and
state_dict keys. ``relu_after=True`` adds a ReLU after each convolution (thesis Table 5.9).

Families (``make_block(name, in_ch, out_ch, binary=False, **kw)``; channel counts quoted for 256):

- ``"bottleneck"`` (Fig. 5.3a): 1x1 256->128, 3x3 128->128, 1x1 128->256 (the HG bottleneck of
  Newell et al., 128-channel middle). ``mid_channels`` changes the middle width.
- ``"wider"`` (Fig. 5.3b): the bottleneck with a 256-channel middle.
- ``"bottleneck_no1x1"`` (Table 5.3, "Bottleneck (wider) + no 1x1"): the wider block without its
  1x1 layers, halved: 3x3 256->128, 3x3 128->256 (see :class:`PlainBlock`).
- ``"multiscale"`` (Fig. 5.3c): a 1x1 256->64 + 3x3 64->64 branch beside a max-pool branch with a
  3x3 (256->32) and a 5x5 decomposed into two 3x3 (256->32->32); concatenated (128) and projected
  back by 1x1 128->256.
- ``"multiscale_no1x1"`` (Fig. 5.3d): the same without 1x1 layers, every width doubled so the
  concatenation has the 256 output channels: 3x3 256->128 | pool, 3x3 256->64 | pool, 3x3 256->64,
  3x3 64->64.
- ``"hierarchical"`` (Fig. 5.3e, "Ours, Final", the FAN ``ConvBlock``): 3x3 256->128 -> 3x3 128->64
  -> 3x3 64->64, the three outputs concatenated (256). ``depth`` (Fig. 5.7) and ``cardinality``
  (Fig. 5.8) generalise it. At width 192 it is the reduced block of Fig. 5.1b. With ``depth=3,
  cardinality=1`` its state_dict keys are the official face-alignment ``ConvBlock`` keys
  (``bn1/conv1/bn2/conv2/bn3/conv3/downsample.0/.2``).

Shortcut (every family): identity when in == out, else ``downsample = BN -> act -> 1x1 conv``
(official keys ``downsample.0/.2``); ``shortcut="fold"`` (in == 2*out) adds the two halves of the
input instead, used after the concatenating merges of the improved hourglass (Fig. 5.6). No ReLU
after the addition, no bias inside blocks.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .binary import bn_sign_conv, make_conv, pre_activation

__all__ = [
    "projection_shortcut",
    "BottleneckBlock",
    "PlainBlock",
    "MultiScaleBlock",
    "HierarchicalBlock",
    "hierarchical_widths",
    "BLOCKS",
    "make_block",
    "block_factory",
]

SHORTCUTS = ("auto", "identity", "project", "fold")


def projection_shortcut(in_channels: int, out_channels: int, binary: bool) -> nn.Sequential:
    """BN -> act -> 1x1 conv (keys ``0`` BN, ``2`` conv: the official ``downsample.0/.2``)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        pre_activation(binary),
        make_conv(in_channels, out_channels, 1, binary),
    )


class _ResidualBlock(nn.Module):
    """Shared shortcut handling; subclasses implement ``body(x)``."""

    def _init_shortcut(self, in_channels: int, out_channels: int, binary: bool, shortcut: str) -> None:
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if shortcut == "auto":
            shortcut = "identity" if in_channels == out_channels else "project"
        if shortcut == "identity" and in_channels != out_channels:
            raise ValueError(f"identity shortcut needs in == out, got {in_channels} -> {out_channels}")
        if shortcut == "fold" and in_channels != 2 * out_channels:
            raise ValueError(f"fold shortcut needs in == 2*out, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.shortcut = shortcut
        self.downsample = projection_shortcut(in_channels, out_channels, binary) if shortcut == "project" else None

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut == "project":
            return self.downsample(x)
        if self.shortcut == "fold":
            # The two halves are the skip and the upsampled branch of an improved-HG merge: their
            # sum is exactly the standard HG's "up1 + up2", kept as a parameter-free shortcut.
            half = self.out_channels
            return x[:, :half] + x[:, half:]
        return x

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.body(x) + self._residual(x)


def _check_divisible(value: int, divisor: int, what: str) -> int:
    if value % divisor:
        raise ValueError(f"{what}: {value} channels are not divisible by {divisor}")
    return value // divisor


class BottleneckBlock(_ResidualBlock):
    """Pre-activation bottleneck (Fig. 5.3a; ``mid_channels=out`` gives the wider block, Fig. 5.3b).

    1x1 in->mid, 3x3 mid->mid, 1x1 mid->out; ``mid_channels`` defaults to out/2 (128 for 256).
    """

    def __init__(self, in_channels: int, out_channels: int, binary: bool = False, relu_after: bool = False,
                 mid_channels: int | None = None, shortcut: str = "auto"):
        super().__init__()
        mid = _check_divisible(out_channels, 2, "bottleneck") if mid_channels is None else int(mid_channels)
        if mid <= 0:
            raise ValueError(f"mid_channels must be positive, got {mid}")
        self.conv1 = bn_sign_conv(in_channels, mid, 1, binary, relu_after)
        self.conv2 = bn_sign_conv(mid, mid, 3, binary, relu_after)
        self.conv3 = bn_sign_conv(mid, out_channels, 1, binary, relu_after)
        self._init_shortcut(in_channels, out_channels, binary, shortcut)

    def body(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


class PlainBlock(_ResidualBlock):
    """Two 3x3 layers in->mid->out (Table 5.3 "Bottleneck (wider) + no 1x1").

    The thesis removes the 1x1 layers of the wider block (leaving 3x3 256->256 layers) and halves
    its parameters to match the proposed block; it does not draw the result. Our reading: the two
    3x3 layers of a residual pair with the middle width halved, 256->128->256 (``mid_channels``
    defaults to out/2).
    """

    def __init__(self, in_channels: int, out_channels: int, binary: bool = False, relu_after: bool = False,
                 mid_channels: int | None = None, shortcut: str = "auto"):
        super().__init__()
        mid = _check_divisible(out_channels, 2, "plain block") if mid_channels is None else int(mid_channels)
        self.conv1 = bn_sign_conv(in_channels, mid, 3, binary, relu_after)
        self.conv2 = bn_sign_conv(mid, out_channels, 3, binary, relu_after)
        self._init_shortcut(in_channels, out_channels, binary, shortcut)

    def body(self, x):
        return self.conv2(self.conv1(x))


class MultiScaleBlock(_ResidualBlock):
    """Multi-scale block with a max-pool branch and a 5x5 decomposed into two 3x3 (Fig. 5.3c/d).

    ``use_1x1=True`` (Fig. 5.3c, 5.2.3): left 1x1 in->out/4, 3x3 out/4->out/4; right, after a 3x3
    max-pool (stride 1, keeps the size), 3x3 in->out/8 and 3x3 in->out/8 -> 3x3 out/8->out/8;
    concatenated (out/2) and back-projected by 1x1 out/2->out.
    ``use_1x1=False`` (Fig. 5.3d, 5.2.4): all 1x1 layers removed and widths doubled so that the
    concatenation itself has ``out`` channels: 3x3 in->out/2 | 3x3 in->out/4 | 3x3 in->out/4 ->
    3x3 out/4->out/4. The thesis gives no stride for the pooling; a stride-1 pool is our reading
    (the block must keep the resolution for its concatenation).
    """

    def __init__(self, in_channels: int, out_channels: int, binary: bool = False, relu_after: bool = False,
                 use_1x1: bool = True, shortcut: str = "auto"):
        super().__init__()
        self.use_1x1 = bool(use_1x1)
        if self.use_1x1:
            left = _check_divisible(out_channels, 4, "multi-scale block")
            right = _check_divisible(out_channels, 8, "multi-scale block")
            self.reduce = bn_sign_conv(in_channels, left, 1, binary, relu_after)
            self.left = bn_sign_conv(left, left, 3, binary, relu_after)
        else:
            left = _check_divisible(out_channels, 2, "multi-scale block")
            right = _check_divisible(out_channels, 4, "multi-scale block")
            self.reduce = None
            self.left = bn_sign_conv(in_channels, left, 3, binary, relu_after)
        self.right3 = bn_sign_conv(in_channels, right, 3, binary, relu_after)
        self.right5a = bn_sign_conv(in_channels, right, 3, binary, relu_after)
        self.right5b = bn_sign_conv(right, right, 3, binary, relu_after)
        concat = left + 2 * right
        self.expand = bn_sign_conv(concat, out_channels, 1, binary, relu_after) if self.use_1x1 else None
        self._init_shortcut(in_channels, out_channels, binary, shortcut)

    def body(self, x):
        left = self.left(self.reduce(x) if self.reduce is not None else x)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        right3 = self.right3(pooled)
        right5 = self.right5b(self.right5a(pooled))
        out = torch.cat([left, right3, right5], dim=1)
        return self.expand(out) if self.expand is not None else out


def hierarchical_widths(out_channels: int, depth: int = 3) -> list[int]:
    """Output widths of the hierarchical layers: halve at each level, the last one repeated so the
    concatenation has ``out_channels`` (depth 3: [out/2, out/4, out/4]; Fig. 5.7 deeper blocks:
    depth 4: [out/2, out/4, out/8, out/8], ...)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if depth == 1:
        return [out_channels]
    _check_divisible(out_channels, 2 ** (depth - 1), f"hierarchical block of depth {depth}")
    widths = [out_channels // 2 ** i for i in range(1, depth)]
    return widths + [widths[-1]]


class _HierarchicalChain(nn.Module):
    """bn{i}/conv{i} layers of one hierarchical path; ``run`` returns their concatenated outputs."""

    def __init__(self, in_channels: int, widths: list[int], binary: bool, relu_after: bool):
        super().__init__()
        _add_chain_layers(self, in_channels, widths, binary)
        self.depth = len(widths)
        self.relu_after = relu_after

    def forward(self, x):
        return _run_chain(self, x, self.depth, self.relu_after)


def _add_chain_layers(module: nn.Module, in_channels: int, widths: list[int], binary: bool) -> None:
    previous = in_channels
    for i, width in enumerate(widths, start=1):
        module.add_module(f"bn{i}", nn.BatchNorm2d(previous))
        module.add_module(f"conv{i}", make_conv(previous, width, 3, binary))
        previous = width
    module.act = pre_activation(binary)


def _run_chain(module: nn.Module, x: torch.Tensor, depth: int, relu_after: bool) -> torch.Tensor:
    outputs = []
    for i in range(1, depth + 1):
        x = getattr(module, f"conv{i}")(module.act(getattr(module, f"bn{i}")(x)))
        if relu_after:
            x = F.relu(x)
        outputs.append(x)
    return torch.cat(outputs, dim=1)


class HierarchicalBlock(_ResidualBlock):
    """Hierarchical, parallel & multi-scale block (Fig. 5.3e / Fig. 5.1b; the FAN ``ConvBlock``).

    Each 3x3 layer feeds the next and all outputs are concatenated, so every layer has a path of
    length 1 to the block output and the receptive fields grow 3, 5, 7, ... (thesis 5.2.5).

    ``depth`` (Fig. 5.7, 5.6.1): number of hierarchical layers, widths from
    :func:`hierarchical_widths` (parameters stay about constant; the thesis goes up to 8).
    ``cardinality`` C (Fig. 5.8, 5.6.2): C parallel hierarchical paths, each reading all ``in``
    channels with ``out/C`` output channels, concatenated (path c's layers are ``branches.c.*``).
    """

    def __init__(self, in_channels: int, out_channels: int, binary: bool = False, relu_after: bool = False,
                 depth: int = 3, cardinality: int = 1, shortcut: str = "auto"):
        super().__init__()
        if cardinality < 1:
            raise ValueError(f"cardinality must be >= 1, got {cardinality}")
        branch_out = _check_divisible(out_channels, cardinality, f"cardinality {cardinality}")
        widths = hierarchical_widths(branch_out, depth)
        self.depth = depth
        self.cardinality = cardinality
        self.relu_after = bool(relu_after)
        if cardinality == 1:
            # Layers live on the block itself: the official ConvBlock keys bn1/conv1/...
            _add_chain_layers(self, in_channels, widths, binary)
            self.branches = None
        else:
            self.branches = nn.ModuleList(
                _HierarchicalChain(in_channels, widths, binary, self.relu_after) for _ in range(cardinality))
        self._init_shortcut(in_channels, out_channels, binary, shortcut)

    def body(self, x):
        if self.branches is None:
            return _run_chain(self, x, self.depth, self.relu_after)
        return torch.cat([branch(x) for branch in self.branches], dim=1)


BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "bottleneck": BottleneckBlock,
    "wider": lambda i, o, binary=False, relu_after=False, shortcut="auto": BottleneckBlock(
        i, o, binary, relu_after, mid_channels=o, shortcut=shortcut),
    "bottleneck_no1x1": PlainBlock,
    "multiscale": lambda i, o, binary=False, relu_after=False, shortcut="auto": MultiScaleBlock(
        i, o, binary, relu_after, use_1x1=True, shortcut=shortcut),
    "multiscale_no1x1": lambda i, o, binary=False, relu_after=False, shortcut="auto": MultiScaleBlock(
        i, o, binary, relu_after, use_1x1=False, shortcut=shortcut),
    "hierarchical": HierarchicalBlock,
}


def make_block(name: str, in_channels: int, out_channels: int, binary: bool = False, **kwargs) -> nn.Module:
    """Build a block by family name (see module docstring); extra keyword arguments go to the
    family (``relu_after``, ``shortcut``, ``mid_channels``, ``depth``, ``cardinality``)."""
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; choose one of {sorted(BLOCKS)}")
    if in_channels <= 0 or out_channels <= 0:
        raise ValueError(f"channel counts must be positive, got {in_channels} -> {out_channels}")
    return BLOCKS[name](in_channels, out_channels, binary=binary, **kwargs)


def block_factory(name: str, binary: bool = False, **kwargs) -> Callable[..., nn.Module]:
    """``f(in_ch, out_ch, shortcut="auto")`` building ``name`` blocks with fixed options."""
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; choose one of {sorted(BLOCKS)}")

    def build(in_channels: int, out_channels: int, shortcut: str = "auto") -> nn.Module:
        return make_block(name, in_channels, out_channels, binary=binary, shortcut=shortcut, **kwargs)

    return build
