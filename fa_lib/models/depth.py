"""Depth subnetwork and the full 3D networks (thesis 4.8, Fig. 4.11).

:class:`ResNetDepth` is a ResNet-152 (bottleneck counts [3, 8, 36, 3]) adapted to 3 + N input
channels (the RGB crop and N landmark heatmaps) with an N-vector output, the z coordinate of each
landmark. Its module tree is the official face-alignment ``ResNetDepth`` (``conv1``, ``bn1``,
``layer1..4.{j}.conv1/bn1/conv2/bn2/conv3/bn3/downsample.0/.1``, ``fc``; 58,496,388 parameters),
so the official depth checkpoint loads into it (its keys carry a ``module.`` prefix, stripped by
:mod:`fa_lib.models.checkpoints`).

:class:`FanFull` chains a FAN (3D-FAN or 2D-to-3D-FAN) and the depth network into 3D-FAN-full /
2D-to-3D-FAN-full, predicting (x, y, z) per landmark.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..heatmaps import decode_heatmaps, gaussian_heatmaps
from .fan import FAN, fan_2d_to_3d, fan_3d

__all__ = ["DepthBottleneck", "ResNetDepth", "FanFull", "fan_3d_full", "fan_2d_to_3d_full"]


class DepthBottleneck(nn.Module):
    """Post-activation ResNet bottleneck (1x1, 3x3 with the stride, 1x1 x4), ReLU after the sum."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNetDepth(nn.Module):
    """ResNet-152 depth regressor (thesis 4.8): (B, 3 + N, 256, 256) -> (B, N) depths.

    7x7/2 conv, max-pool 3/2, four stages of bottlenecks (``layers``, widths 64-512, x4
    expansion), ``AvgPool2d(7)`` (a 256 px input leaves 8x8 -> 1x1) and ``fc`` 2048 -> N.
    The output is the z coordinate in input-crop pixels (the official API scales it to the image
    by ``200 * scale / 256``).
    """

    def __init__(self, in_channels: int = 3 + 68, num_outputs: int = 68, layers=(3, 8, 36, 3)):
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers!r}")
        self.in_channels = in_channels
        self.config = dict(in_channels=in_channels, num_outputs=num_outputs, layers=tuple(int(n) for n in layers))
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if index == 1 else 2
            stage = []
            for j in range(count):
                stage.append(DepthBottleneck(channels, planes, stride if j == 0 else 1))
                channels = planes * DepthBottleneck.expansion
            self.add_module(f"layer{index}", nn.Sequential(*stage))
        self.avgpool = nn.AvgPool2d(7)
        self.fc = nn.Linear(channels, num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNetDepth expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


class FanFull(nn.Module):
    """3D-FAN-full / 2D-to-3D-FAN-full (thesis 4.8, Fig. 4.11): FAN heatmaps -> (x, y), then the
    depth network on the RGB crop + heatmaps -> z.

    The depth network's heatmaps are re-rendered Gaussians (std ``depth_sigma`` input px, 2 as in
    the official API) at the decoded points of the last stack, so the depth input has the same
    form in training (ground-truth points) and at test time. Input: (B, C, H, W) with the RGB
    crop in channels 0-2 (C = 3 for 3D-FAN, 3 + 68 for 2D-to-3D-FAN). ``forward`` returns
    ``(heatmaps_per_stack, points)`` with ``points`` (B, N, 3) in input-crop pixels (x, y from the
    heatmaps scaled by H / heatmap size; z as regressed).
    """

    def __init__(self, fan: FAN, depth: ResNetDepth, depth_sigma: float = 2.0):
        super().__init__()
        if depth.in_channels != 3 + fan.config["num_landmarks"]:
            raise ValueError(f"depth network takes {depth.in_channels} channels, expected "
                             f"3 + {fan.config['num_landmarks']} (RGB + one map per landmark)")
        self.fan = fan
        self.depth = depth
        self.depth_sigma = float(depth_sigma)
        self.config = dict(fan=dict(fan.config), depth=dict(depth.config), depth_sigma=self.depth_sigma)

    def depth_input(self, rgb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """RGB crop (B, 3, H, W) + Gaussian maps at ``points`` (B, N, 2) in crop pixels."""
        maps = gaussian_heatmaps(points, tuple(rgb.shape[-2:]), self.depth_sigma).to(rgb.dtype)
        return torch.cat([rgb, maps], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        heatmaps = self.fan(x)
        last = heatmaps[-1]
        xy, _ = decode_heatmaps(last.detach())
        xy = xy.to(x.device) * torch.tensor([x.shape[-1] / last.shape[-1], x.shape[-2] / last.shape[-2]],
                                           dtype=xy.dtype, device=x.device)
        z = self.depth(self.depth_input(x[:, :3], xy))
        return heatmaps, torch.cat([xy, z.unsqueeze(-1)], dim=-1)


def fan_3d_full(stacks: int = 4, num_landmarks: int = 68, **fan_kwargs) -> FanFull:
    """3D-FAN-full: 3D-FAN followed by the ResNet-152 depth network."""
    return FanFull(fan_3d(stacks, num_landmarks=num_landmarks, **fan_kwargs),
                   ResNetDepth(3 + num_landmarks, num_landmarks))


def fan_2d_to_3d_full(stacks: int = 4, num_landmarks: int = 68, **fan_kwargs) -> FanFull:
    """2D-to-3D-FAN-full (Fig. 4.11): 2D-to-3D-FAN followed by the depth network."""
    return FanFull(fan_2d_to_3d(stacks, num_landmarks=num_landmarks, **fan_kwargs),
                   ResNetDepth(3 + num_landmarks, num_landmarks))
