"""Models of the thesis: binary layers, blocks, hourglasses, the FAN family and the depth network.

Constructors (one per family, explicit arguments; see each module):

- :mod:`.binary`: ``BinaryConv2d`` and the binary layer rule (eq. 5.1-5.2), ``bn_sign_conv``.
- :mod:`.blocks`: ``make_block(name, in_ch, out_ch, binary=False, **kw)`` (Fig. 5.3 (a)-(e), 5.7, 5.8).
- :mod:`.hourglass`: ``HourGlass`` (Fig. 4.1, official keys), ``ImprovedHourGlass`` (Fig. 5.6).
- :mod:`.fan`: ``FAN``, ``fan_2d``, ``fan_3d``, ``fan_2d_to_3d``, ``binary_hourglass_net``,
  ``face_parsing_net``, ``parameter_count``.
- :mod:`.cale`: ``cale``, ``CaleDetector``, ``CaleRegressor``, ``Cale``, ``CaleAligner`` (chapter 3).
- :mod:`.superfan`: ``super_fan_generator``, ``sr_resnet`` (``SRGenerator``), ``Critic``, the WGAN-GP
  penalty, ``ResNet50Features`` and the losses of eqs. 6.1-6.5 (chapter 6).
- :mod:`.depth`: ``ResNetDepth``, ``FanFull``, ``fan_3d_full``, ``fan_2d_to_3d_full`` (thesis 4.8).
- :mod:`.checkpoints`: official checkpoints in, our own checkpoints in and out (``model_kind``,
  ``build_model``: the kind and config our checkpoints store).
- :mod:`.sizes`: our parameter counts beside the thesis's.

``get_model(name, **kwargs)`` builds any of them by name; ``build_model(kind, config)`` rebuilds a
model from the ``config`` it stores (used by our checkpoints).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .binary import BinaryConv2d, binarize_sign_ste, bn_sign_conv, sign_pm1, weight_scale
from .blocks import BLOCKS, HierarchicalBlock, make_block
from .cale import Cale, CaleAligner, CaleDetector, CaleRegressor, cale
from .checkpoints import (CheckpointMismatchError, build_model, checkpoint_input_size, load_fan_checkpoint,
                          load_model, load_official_depth, load_official_fan, load_weights, model_kind,
                          read_state_dict, save_model)
from .depth import FanFull, ResNetDepth, fan_2d_to_3d_full, fan_3d_full
from .fan import (FAN, binary_hourglass_net, face_parsing_net, fan_2d, fan_2d_to_3d, fan_2d_to_3d_input, fan_3d,
                  parameter_count)
from .hourglass import HourGlass, ImprovedHourGlass
from .superfan import Critic, ResNet50Features, SRGenerator, sr_resnet, super_fan_generator

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fan": FAN,
    "fan_2d": fan_2d,
    "fan_3d": fan_3d,
    "fan_2d_to_3d": fan_2d_to_3d,
    "fan_3d_full": fan_3d_full,
    "fan_2d_to_3d_full": fan_2d_to_3d_full,
    "binary_hourglass_net": binary_hourglass_net,
    "face_parsing_net": face_parsing_net,
    "resnet_depth": ResNetDepth,
    "cale": cale,
    "super_fan_generator": super_fan_generator,
    "sr_resnet": sr_resnet,
    "critic": Critic,
}


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a model by constructor name (``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = [
    "BinaryConv2d", "binarize_sign_ste", "bn_sign_conv", "sign_pm1", "weight_scale",
    "SRGenerator", "super_fan_generator", "sr_resnet", "Critic", "ResNet50Features",
    "cale", "Cale", "CaleAligner", "CaleDetector", "CaleRegressor",
    "BLOCKS", "HierarchicalBlock", "make_block", "HourGlass", "ImprovedHourGlass",
    "FAN", "fan_2d", "fan_3d", "fan_2d_to_3d", "fan_2d_to_3d_input", "binary_hourglass_net", "face_parsing_net",
    "parameter_count", "ResNetDepth", "FanFull", "fan_3d_full", "fan_2d_to_3d_full",
    "CheckpointMismatchError", "read_state_dict", "load_weights", "load_official_fan", "load_official_depth",
    "save_model", "load_model", "load_fan_checkpoint", "checkpoint_input_size", "MODELS", "get_model",
    "model_kind", "build_model",
]
