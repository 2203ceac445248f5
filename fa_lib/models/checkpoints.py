"""Loading official face-alignment checkpoints and saving/loading our own models.

Official files come in three forms, all handled by :func:`read_state_dict`:

- a plain state_dict (``{key: tensor}``) or one wrapped as ``{"state_dict": {...}}``
  (face-alignment 1.0 ``.pth.tar`` files);
- keys prefixed with ``module.`` (the depth checkpoint, saved from ``nn.DataParallel``);
- TorchScript archives (face-alignment >= 1.1 ``.zip`` files), whose parameters and buffers are
  read with ``torch.jit.load`` (no Python code is executed; the archive's graph is discarded).

Pickled files are always read with ``torch.load(weights_only=True)``. Loading is strict: any
missing, unexpected or wrongly shaped key raises :class:`CheckpointMismatchError` listing them.

Our own checkpoints (:func:`save_model` / :func:`load_model`) store the constructor config beside
the weights so the model can be rebuilt without knowing its arguments (:func:`model_kind`,
:func:`build_model`); :func:`load_fan_checkpoint` reads either kind of file and
:func:`checkpoint_input_size` the crop size one of ours records.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from ..atomic import atomic_torch_save
from .depth import FanFull, ResNetDepth
from .fan import FAN
from .superfan import SuperFan

__all__ = [
    "CheckpointMismatchError",
    "read_state_dict",
    "normalize_state_dict",
    "load_weights",
    "load_official_fan",
    "load_official_depth",
    "save_model",
    "load_model",
    "load_fan_checkpoint",
    "checkpoint_extra",
    "checkpoint_input_size",
    "describe_checkpoint",
    "fan_config_from_state",
    "is_trainer_checkpoint",
    "model_kind",
    "build_model",
]

OUR_FORMAT = "fa_lib.model"
OUR_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model's."""


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    # torch.jit.save writes the model's code under <root>/code/; torch.save never does.
    return any("/code/" in name for name in names) or any(name.endswith("constants.pkl") for name in names)


def normalize_state_dict(state: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}`` and strip a ``module.`` prefix shared by every key."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: expected a state_dict (a mapping), got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors or len(tensors) != len(state):
        others = sorted(key for key, value in state.items() if not isinstance(value, torch.Tensor))
        raise ValueError(f"{source}: not a state_dict of tensors (non-tensor entries: {others[:8]})")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def read_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a state_dict from an official or plain checkpoint file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if _is_torchscript_archive(path):
        scripted = torch.jit.load(str(path), map_location=map_location)
        return normalize_state_dict(dict(scripted.state_dict()), str(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling refused or corrupt file: say which file
        raise ValueError(f"cannot read checkpoint {path} with torch.load(weights_only=True): {error}") from error
    if isinstance(state, Mapping) and state.get("format") == OUR_FORMAT:
        state = state["state_dict"]
    elif is_trainer_checkpoint(state):
        state = state["model"]
    return normalize_state_dict(state, str(path))


def is_trainer_checkpoint(payload: Any) -> bool:
    """Is ``payload`` a resumable checkpoint of :class:`fa_lib.train.Trainer` (``last.pt``: the
    model's state_dict beside the optimiser's state and the step)?"""
    return isinstance(payload, Mapping) and isinstance(payload.get("model"), Mapping) and \
        "optimizer" in payload and "step" in payload


def _state_of(source: str | os.PathLike | Mapping[str, Any]) -> tuple[str, dict[str, torch.Tensor]]:
    """(a name for messages, the state_dict) of a checkpoint file or an in-memory state_dict."""
    if isinstance(source, (str, os.PathLike)):
        return str(source), read_state_dict(source)
    return "state_dict", normalize_state_dict(source, "state_dict")


def _describe(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} [{shown}{', ...' if len(keys) > limit else ''}]"


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], strict: bool = True,
                 check_only: bool = False) -> nn.Module:
    """Load a state_dict (a mapping or a checkpoint file) into ``model``.

    Strict by default: raises :class:`CheckpointMismatchError` naming the missing keys, the
    unexpected keys and the shape mismatches (with ``strict=False`` only shapes are checked and
    matching keys are loaded; ``check_only=True`` only checks). Returns the model.
    """
    name, state = _state_of(source)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
                    for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    problems = []
    if strict and missing:
        problems.append(f"missing keys {_describe(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys {_describe(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {_describe(shapes)}")
    if problems:
        raise CheckpointMismatchError(f"{name} does not match {type(model).__name__}: " + "; ".join(problems))
    if check_only:
        return model
    if strict:
        model.load_state_dict(state, strict=True)
    else:
        model.load_state_dict({key: value for key, value in state.items() if key in expected}, strict=False)
    return model


def _build_and_load(build, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build a model on the meta device (no random initialisation of weights that are about to be
    replaced), check the state against it, then adopt copies of the checkpoint tensors."""
    with torch.device("meta"):
        model = build()
    load_weights(model, state, check_only=True)
    model.load_state_dict({key: value.detach().clone() for key, value in state.items()}, strict=True, assign=True)
    return model.eval()


def _count_stacks(state: Mapping[str, torch.Tensor]) -> int:
    stacks = 0
    while f"l{stacks}.weight" in state:
        stacks += 1
    return stacks


def fan_config_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """FAN constructor arguments readable from a state_dict's keys and shapes: stacks, input
    channels, landmarks, width, hourglass depth and stem widths (not the pooling, which has no
    weights)."""
    config: dict[str, Any] = dict(num_modules=_count_stacks(state), in_channels=int(state["conv1.weight"].shape[1]),
                                  num_landmarks=int(state["l0.weight"].shape[0]),
                                  width=int(state["l0.weight"].shape[1]))
    levels = [int(k.split(".")[1][len("b1_"):]) for k in state if k.startswith("m0.b1_") and k.split(".")[1][3:].isdigit()]
    if levels:
        config["hg_depth"] = max(levels)
    convs = [state[f"conv2.conv{i}.weight"] for i in (1, 2, 3) if f"conv2.conv{i}.weight" in state]
    if convs:  # the stem's second block concatenates its three convolutions' outputs
        config["stem_channels"] = (int(state["conv1.weight"].shape[0]), int(sum(c.shape[0] for c in convs)))
    return config


def run_folder_config(path: str | os.PathLike) -> dict[str, Any]:
    """The FAN arguments a run of this project's run cache records beside its weights
    (``meta.json``'s ``budget["fan"]``, e.g. the pooling), or {} when there is none."""
    fan = _run_meta(path).get("budget", {}).get("fan")
    if not isinstance(fan, Mapping):
        return {}
    config = dict(fan)
    if "stem_channels" in config:
        config["stem_channels"] = tuple(config["stem_channels"])
    return config


def load_official_fan(source: str | os.PathLike | Mapping[str, Any], **fan_kwargs) -> nn.Module:
    """Build a :class:`~fa_lib.models.fan.FAN` shaped like a checkpoint of plain weights (2D-FAN /
    3D-FAN / 2D-to-3D-FAN: stacks, input channels, landmarks, width, hourglass depth and stem read
    from the weights, :func:`fan_config_from_state`) and load it strictly. Official weights were
    trained with average pooling (the default here); ``fan_kwargs`` override what is read."""
    name, state = _state_of(source)
    if "conv1.weight" not in state or "l0.weight" not in state:
        raise CheckpointMismatchError(f"{name} is not a FAN checkpoint (no conv1.weight / l0.weight)")
    config = fan_config_from_state(state)
    config.update(fan_kwargs)
    return _build_and_load(lambda: FAN(**config), state)


def load_official_depth(source: str | os.PathLike | Mapping[str, Any]) -> nn.Module:
    """Build the depth network (:class:`~fa_lib.models.depth.ResNetDepth`, input channels, outputs
    and stage depths read from the weights: ResNet-152 for the official file) and load the official
    depth checkpoint (``module.`` prefix stripped) strictly."""
    name, state = _state_of(source)
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise CheckpointMismatchError(f"{name} is not a depth-network checkpoint (no conv1.weight / fc.weight)")
    # Stage depths from the keys (ResNet-152 gives [3, 8, 36, 3]).
    layers = tuple(1 + max((int(key.split(".")[1]) for key in state if key.startswith(f"layer{i}.")), default=-1)
                   for i in range(1, 5))
    return _build_and_load(lambda: ResNetDepth(in_channels=int(state["conv1.weight"].shape[1]),
                                               num_outputs=int(state["fc.weight"].shape[0]), layers=layers), state)


def model_kind(model: nn.Module) -> str:
    """The class name :func:`build_model` rebuilds ``model`` from (``"fan"``, ``"fan_full"``, ``"resnet_depth"``,
    ``"super_fan"``)."""
    for kind, cls in (("fan_full", FanFull), ("fan", FAN), ("resnet_depth", ResNetDepth), ("super_fan", SuperFan)):
        if isinstance(model, cls):
            return kind
    raise ValueError(f"cannot save {type(model).__name__}: not a FAN, FanFull, ResNetDepth or SuperFan")


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model (random weights) from the ``kind`` and ``config`` stored in our checkpoints."""
    if kind == "fan":
        return FAN(**config)
    if kind == "resnet_depth":
        return ResNetDepth(**config)
    if kind == "super_fan":
        return SuperFan.from_config(config)
    if kind == "fan_full":
        return FanFull(FAN(**config["fan"]), ResNetDepth(**config["depth"]), depth_sigma=config["depth_sigma"])
    raise ValueError(f"unknown model kind {kind!r}")


def save_model(model: nn.Module, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``model`` (a library model with a ``config``) and its constructor config, atomically.

    ``extra`` holds plain metadata (numbers, strings, lists, dicts) such as the training step.
    """
    kind = model_kind(model)
    payload = {"format": OUR_FORMAT, "version": OUR_VERSION, "kind": kind, "config": model.config,
               "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
               "extra": dict(extra or {})}
    return atomic_torch_save(payload, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild and load a model saved by :func:`save_model`; returns ``(model, extra)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, Mapping) or payload.get("format") != OUR_FORMAT:
        raise ValueError(f"{path} is not an fa_lib model checkpoint (use load_weights / load_official_* "
                         "for plain or official state_dicts)")
    model = build_model(payload["kind"], payload["config"])
    load_weights(model, payload["state_dict"])
    return model, dict(payload.get("extra", {}))


def load_fan_checkpoint(path: str | os.PathLike) -> nn.Module:
    """A network from a checkpoint file: one of ours (any model kind, :func:`load_model`) or, when
    the file holds plain weights (an official FAN checkpoint, a run's ``model.pt`` or a trainer's
    ``last.pt``), a FAN shaped like them (:func:`load_official_fan`; a run folder's ``meta.json``
    supplies what the weights cannot say, such as the pooling)."""
    try:
        model, _ = load_model(path)
        return model
    except ValueError:
        return load_official_fan(path, **run_folder_config(path))


def describe_checkpoint(path: str | os.PathLike) -> str:
    """What a checkpoint file holds, in words (e.g. for ``fa-lib landmarks`` to say what it loaded)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a TorchScript archive or a file torch.load refuses
        return f"{path}: an official face-alignment archive"
    if isinstance(payload, Mapping) and payload.get("format") == OUR_FORMAT:
        extra = payload.get("extra") or {}
        what = extra.get("network") or payload.get("kind", "network")
        size = f", {extra['input_size']} px crops" if extra.get("input_size") else ""
        return f"{path}: a {what} saved by fa_lib{size}"
    if is_trainer_checkpoint(payload):
        state = payload["model"]
        kind = "trainer checkpoint (step {})".format(payload.get("step"))
    else:
        state = normalize_state_dict(payload, str(path)) if isinstance(payload, Mapping) else {}
        kind = "plain state_dict"
    if "conv1.weight" in state and "l0.weight" in state:
        config = {**fan_config_from_state(state), **run_folder_config(path)}
        shape = ", ".join(f"{k} {v}" for k, v in config.items())
        return f"{path}: a {kind} of a FAN ({shape})"
    return f"{path}: a {kind}"


def checkpoint_extra(weights) -> dict[str, Any]:
    """The metadata a checkpoint of this project records beside its weights (``extra`` of
    :func:`save_model`, e.g. ``input_size``, ``decoder``); {} for other files."""
    if weights is None or not Path(weights).is_file():
        return {}
    try:
        payload = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # an official or TorchScript checkpoint: no metadata of ours
        return {}
    extra = payload.get("extra") if isinstance(payload, dict) and payload.get("format") == OUR_FORMAT else None
    return dict(extra) if isinstance(extra, dict) else {}


def checkpoint_input_size(weights) -> int | None:
    """The input size (px) a checkpoint of this project records: ``extra["input_size"]`` of a saved model
    (e.g. the chapter-4 networks, which read 64-128 px crops) or the record of the run folder holding it;
    None otherwise (official checkpoints: the thesis's 256 px then applies)."""
    if weights is None:
        return None
    size = checkpoint_extra(weights).get("input_size") or _run_record(weights).get("input_size")
    return int(size) if size else None


def _run_meta(path: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of the run-cache folder holding ``path``, or {}."""
    import json

    try:
        meta = json.loads(Path(path).with_name("meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _run_record(path: str | os.PathLike) -> dict[str, Any]:
    """The run-cache record (``meta.json``'s ``key``) of the run folder holding ``path``, or {}."""
    key = _run_meta(path).get("key")
    return key if isinstance(key, dict) else {}
