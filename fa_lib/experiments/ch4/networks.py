"""The chapter's networks at the profile's scale: FAN (2D-FAN, 3D-FAN, 2D-to-3D-FAN, Table 4.4's
sizes) and the depth ResNet of 3D-FAN-full (section 4.8). Initial weights depend on the seed only
(:func:`fa_lib.experiments.runs.seeded`)."""
from __future__ import annotations

import torch.nn as nn

from fa_lib.experiments.ch4.scale import Ch4Setup
from fa_lib.experiments.runs import seeded
from fa_lib.models.depth import ResNetDepth
from fa_lib.models.fan import FAN

#: the kinds of FAN of section 4.3 and their names
FAN_KINDS = {"2d": "2D-FAN", "3d": "3D-FAN", "2d_to_3d": "2D-to-3D-FAN"}
NUM_LANDMARKS = 68


def new_fan(setup: Ch4Setup, kind: str, *, seed: int = 0, stacks: int | None = None,
            width: int | None = None) -> FAN:
    """A freshly initialised FAN of ``kind`` (``"2d"``, ``"3d"``, ``"2d_to_3d"``: RGB plus one guide
    map per landmark in) at this scale, ``stacks``/``width`` overriding the chapter's layout."""
    if kind not in FAN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(repr(k) for k in FAN_KINDS)}, got {kind!r}")
    in_channels = 3 + NUM_LANDMARKS if kind == "2d_to_3d" else 3
    with seeded(seed):
        return FAN(in_channels=in_channels, **setup.fan_kwargs(stacks, width))


def new_depth_network(setup: Ch4Setup, *, seed: int = 0, num_landmarks: int = NUM_LANDMARKS) -> ResNetDepth:
    """The depth ResNet at this scale. The official network ends in ``AvgPool2d(7)``, which fits
    only a 224-256 px input; below that it is replaced by a global average (no parameters, so the
    parameter count and state_dict keys are unchanged)."""
    with seeded(seed):
        net = ResNetDepth(3 + num_landmarks, num_landmarks, layers=tuple(setup.depth_layers))
    if setup.depth_input_size < 224:
        net.avgpool = nn.AdaptiveAvgPool2d(1)
    return net
