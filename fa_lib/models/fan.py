"""Face Alignment Network and the binary hourglass networks (thesis 4.3, Fig. 4.2, 4.3, 5.9).

One constructor, :class:`FAN`, builds every stacked-hourglass network of chapters 4 and 5 from
explicit arguments (stacks, width, block family, binary or real, standard or improved hourglass,
pooling, inputs, outputs). With ``block="hierarchical"``, ``hourglass="standard"`` and the default
widths its state_dict keys are those of the official face-alignment ``FAN`` (1.x), so the
official 2D-FAN / 3D-FAN checkpoints load into it and give the same heatmaps.

Module tree (keys are irregular on purpose: ``top_m_0`` but ``conv_last0``)::

    conv1 (7x7/2, bias) - bn1 - relu - conv2 block(64->128) - pool - conv3 block(128->128)
    - conv4 block(128->width); for stack i: m{i} hourglass, top_m_{i} block, conv_last{i} 1x1
    (bias), bn_end{i}, relu, l{i} 1x1 -> heatmaps; between stacks
    previous = previous + bl{i}(features) + al{i}(heatmaps)

Binary networks (chapter 5, Fig. 5.9): every residual block is binary; the first layer (``conv1``)
and the per-stack 1x1 head layers (``conv_last``, ``l``, ``bl``, ``al``) stay real (thesis 5.2.1:
"keeping only the first and last layers of the network real").
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..heatmaps import gaussian_heatmaps
from .blocks import block_factory
from .hourglass import make_hourglass, pool2x

__all__ = [
    "FAN",
    "fan_2d",
    "fan_3d",
    "fan_2d_to_3d",
    "fan_2d_to_3d_input",
    "binary_hourglass_net",
    "face_parsing_net",
    "parameter_count",
]


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and are not counted; a
    binary weight counts as one parameter, as in the thesis's tables)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class FAN(nn.Module):
    """Stacked hourglass network (FAN, thesis Fig. 4.2; binary HG networks, Fig. 5.9).

    Args:
        num_modules: number of stacked hourglasses (thesis Table 4.4: 1-4).
        width: channels inside the hourglasses (256 in the thesis; 192 gives the reduced network
            of Fig. 5.1b / Table 5.4).
        num_landmarks: heatmaps per stack (68; 7 for the face-parsing head of thesis 5.8).
        in_channels: 3 for RGB, 3 + 68 for 2D-to-3D-FAN (thesis 4.3.1).
        hg_depth: recursion depth of each hourglass (4: 64 -> 4 px).
        pooling: ``"avg"`` (official PyTorch weights) or ``"max"`` (thesis, Torch7).
        block: block family (``fa_lib.models.blocks.BLOCKS``).
        binary: binary residual blocks (chapter 5) or real (chapter 4).
        hourglass: ``"standard"`` (Fig. 4.1) or ``"improved"`` (Fig. 5.6).
        relu_after: ReLU after every block convolution (thesis Table 5.9).
        stem_channels: widths of the stem (conv1 output, conv2/conv3 output), official (64, 128).
        block_kwargs: extra options of the block family (``depth``, ``cardinality``, ``mid_channels``).

    ``forward(x)`` returns the list of per-stack heatmaps, each (B, num_landmarks, H/4, W/4).
    ``config`` holds the constructor arguments (saved in our checkpoints).
    """

    def __init__(self, num_modules: int = 4, width: int = 256, num_landmarks: int = 68, in_channels: int = 3,
                 hg_depth: int = 4, pooling: str = "avg", block: str = "hierarchical", binary: bool = False,
                 hourglass: str = "standard", relu_after: bool = False,
                 stem_channels: tuple[int, int] = (64, 128), block_kwargs: dict[str, Any] | None = None):
        super().__init__()
        if num_modules < 1:
            raise ValueError(f"num_modules must be >= 1, got {num_modules}")
        for name, value in (("width", width), ("num_landmarks", num_landmarks), ("in_channels", in_channels)):
            if int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if len(stem_channels) != 2:
            raise ValueError(f"stem_channels must be (conv1 width, block width), got {stem_channels!r}")
        block_kwargs = dict(block_kwargs or {})
        self.config = dict(num_modules=num_modules, width=width, num_landmarks=num_landmarks,
                           in_channels=in_channels, hg_depth=hg_depth, pooling=pooling, block=block,
                           binary=bool(binary), hourglass=hourglass, relu_after=bool(relu_after),
                           stem_channels=tuple(int(c) for c in stem_channels), block_kwargs=block_kwargs)
        self.num_modules = num_modules
        self.pooling = pooling
        self.in_channels = in_channels
        make = block_factory(block, binary=binary, relu_after=relu_after, **block_kwargs)
        c1, c2 = (int(c) for c in stem_channels)

        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=7, stride=2, padding=3)  # real (first layer)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = make(c1, c2)
        self.conv3 = make(c2, c2)
        self.conv4 = make(c2, width)

        for i in range(num_modules):
            hg = make_hourglass(hourglass, hg_depth, width, make, pooling)
            self.add_module(f"m{i}", hg)
            fold = hg.out_channels == 2 * width
            self.add_module(f"top_m_{i}", make(hg.out_channels, width, shortcut="fold" if fold else "auto"))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, num_landmarks, kernel_size=1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks, width, kernel_size=1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: (B, in_channels, H, W) -> (B, width, H/4, W/4)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FAN expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = pool2x(self.conv2(x), self.pooling)
        return self.conv4(self.conv3(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        previous = self.features(x)
        outputs = []
        for i in range(self.num_modules):
            ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
            ll = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
            heatmaps = getattr(self, f"l{i}")(ll)
            outputs.append(heatmaps)
            if i < self.num_modules - 1:
                previous = previous + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(heatmaps)
        return outputs


def fan_2d(stacks: int = 4, **kwargs) -> FAN:
    """2D-FAN (thesis 4.3): RGB in, 68 heatmaps of the 2D (visible-contour) landmarks out."""
    return FAN(num_modules=stacks, **kwargs)


def fan_3d(stacks: int = 4, **kwargs) -> FAN:
    """3D-FAN (thesis 4.3): same network as 2D-FAN, trained on the 2D projections of 3D landmarks."""
    return FAN(num_modules=stacks, **kwargs)


def fan_2d_to_3d(stacks: int = 4, num_landmarks: int = 68, **kwargs) -> FAN:
    """2D-to-3D-FAN (thesis 4.3.1, Fig. 4.3): RGB + one Gaussian map per 2D landmark in (3 + 68
    channels, see :func:`fan_2d_to_3d_input`), 3D-landmark heatmaps out."""
    return FAN(num_modules=stacks, num_landmarks=num_landmarks, in_channels=3 + num_landmarks, **kwargs)


def fan_2d_to_3d_input(images: torch.Tensor, points_2d, sigma: float = 1.0) -> torch.Tensor:
    """Input of 2D-to-3D-FAN: ``images`` (B, 3, H, W) concatenated with Gaussian maps (std ``sigma``
    = 1 px, thesis 4.3.1) centred on ``points_2d`` (B, N, 2) given in input-image pixels."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    maps = gaussian_heatmaps(points_2d, tuple(images.shape[-2:]), sigma).to(images.device, images.dtype)
    if maps.ndim != 4 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"points_2d must be (B, N, 2) with B = {images.shape[0]}, got maps {tuple(maps.shape)}")
    return torch.cat([images, maps], dim=1)


def binary_hourglass_net(block: str = "hierarchical", stacks: int = 1, width: int = 256, binary: bool = True,
                         hourglass: str = "standard", pooling: str = "max", relu_after: bool = False,
                         num_outputs: int = 68, in_channels: int = 3, hg_depth: int = 4,
                         stem_channels: tuple[int, int] = (64, 128), **block_kwargs) -> FAN:
    """The networks of chapter 5: ``stacks`` hourglasses of ``block`` blocks, binary by default,
    first and last layers real (Fig. 5.9). The thesis's Torch7 models use max-pooling (Table 5.8).

    Examples: ``binary_hourglass_net("bottleneck")`` (Table 5.1/5.2 baseline, 3.5M),
    ``binary_hourglass_net()`` ("Ours, Final", 6.2M), ``binary_hourglass_net(width=192)`` (Fig. 5.1b,
    Table 5.4), ``binary_hourglass_net(hourglass="improved")`` (Fig. 5.6), ``stacks=2`` (Fig. 5.9),
    ``binary_hourglass_net(depth=6)`` / ``cardinality=4`` (Fig. 5.7 / 5.8).
    """
    return FAN(num_modules=stacks, width=width, num_landmarks=num_outputs, in_channels=in_channels,
               hg_depth=hg_depth, pooling=pooling, block=block, binary=binary, hourglass=hourglass,
               relu_after=relu_after, stem_channels=stem_channels, block_kwargs=block_kwargs)


def face_parsing_net(block: str = "hierarchical", binary: bool = True, classes: int = 7, **kwargs) -> FAN:
    """Face parsing (thesis 5.8): the landmark network with its last layer changed to ``classes``
    (7: skin, lower lip, upper lip, inner mouth, eyes, nose, background) score maps, trained with
    a per-pixel log-softmax loss."""
    return binary_hourglass_net(block=block, binary=binary, num_outputs=classes, **kwargs)
