"""Chapter 5's scale and the networks it trains.

:func:`ch5_setup` resolves the profile's typed chapter-5 section (:class:`fa_lib.profiles.Ch5Scale`)
and its data section into a :class:`Ch5Setup`: every knob with its documented rule applied (stem
channels from the width, the depth/cardinality sweeps from the width, workers = min(2, cores), ...).

One network constructor serves every experiment (:class:`fa_lib.models.FAN`), described here by a
:class:`NetSpec`: a stacked hourglass whose residual blocks are one family of Fig. 5.3 (binary or
real), first and last layers real (thesis 5.2.1). One :class:`Recipe` fixes the loss (sigmoid
cross-entropy of eq. 5.3 by default), the augmentation of section 5.5.1 and the task. The named specs
below (``OURS``, ``BOTTLENECK``, ...) are the networks of the chapter's tables.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from fa_lib.models.fan import FAN, parameter_count
from fa_lib.profiles import Profile, TrainConfig, get_profile

#: the thesis's width of every hourglass (256 channels); our widths are scaled from it
THESIS_WIDTH = 256
THESIS_INPUT = 256
THESIS_HG_DEPTH = 4
#: the optimiser of section 5.5.1
OPTIMIZER = "rmsprop"


@dataclass(frozen=True)
class Ch5Setup:
    """Every scale knob chapter 5 uses, resolved from ``profile.ch5`` and ``profile.data`` (the knobs
    are documented on :class:`fa_lib.profiles.Ch5Scale`; the notebook's "Choosing the scale" section
    gives the measurements behind the quick profile's values). Values here are never None: the
    section's None-rules are applied by :func:`ch5_setup`."""

    profile: Profile
    input_size: int
    width: int
    hg_depth: int
    stem_channels: tuple[int, int]
    batch_size: int
    iterations: int | None
    epochs: int | None
    lr: float
    lr_milestones: tuple[float, ...]
    lr_gamma: float
    seeds: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    stage_fraction: float
    max_stacks: int
    parsing_input_size: int
    parsing_zoom: float
    depths: tuple[int, ...]
    cardinalities: tuple[int, ...]
    real_twins: bool
    workers: int
    threads: int | None
    timing_repeats: int
    train_size: int
    test_size: int
    pifa_size: int
    image_size: int
    sigma: float = 1.0
    packed_threads: tuple[int, ...] = (1,)
    packed_batch: int = 16
    packed_repeats: int = 5
    packed_images: int | None = None
    decoder: str = "quarter"          # heatmaps -> points in every evaluation (fa_lib.heatmaps.DECODERS)
    cpu_bf16: bool = False            # bfloat16 autocast when training on a CPU
    channels_last: bool = False       # channels-last memory when training
    optimizer: str = OPTIMIZER
    val_fraction: float = 0.0         # training faces held out to validate landmark runs each epoch

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    @property
    def parsing_output_size(self) -> int:
        return self.parsing_input_size // 4

    def train_config(self) -> TrainConfig:
        """One run's optimisation budget (section 5.5.1: RMSprop, lr dropped by ``lr_gamma`` at the
        milestones): what the trainer gets and what a run's cache key records."""
        return TrainConfig(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size, iterations=self.iterations,
                           epochs=None if self.iterations is not None else self.epochs,
                           lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma, cpu_bf16=self.cpu_bf16,
                           channels_last=self.channels_last, val_decoder=self.decoder)

    def stage_iterations(self) -> int | None:
        """Optimiser steps of each phase of a stage-wise stack (5.7.2): ``stage_fraction`` of one run
        (None when the budget is counted in epochs: each phase then gets the epochs of one run)."""
        if self.iterations is None:
            return None
        return max(1, int(round(self.stage_fraction * self.iterations)))

    def budget(self) -> dict[str, Any]:
        """The training budget of one run (written into every table's provenance)."""
        return {"optimizer": self.optimizer, "lr": self.lr, "lr_milestones": list(self.lr_milestones),
                "lr_gamma": self.lr_gamma, "batch_size": self.batch_size, "iterations": self.iterations,
                "epochs": self.epochs, "seeds": list(self.seeds), "input_size": self.input_size,
                "heatmap_size": self.heatmap_size, "width": self.width, "hg_depth": self.hg_depth,
                "stem_channels": list(self.stem_channels), "train_size": self.train_size,
                "val_fraction": self.val_fraction, "cpu_bf16": self.cpu_bf16, "channels_last": self.channels_last}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = self.profile.name
        return d


def default_depths(width: int) -> tuple[int, ...]:
    """Fig. 5.7: depths 2, 3, ... while the last layer keeps at least 4 channels (the thesis's
    stopping rule: "in practice we stop at a minimum of 4")."""
    depths, d = [], 2
    while width % 2 ** (d - 1) == 0 and width // 2 ** (d - 1) >= 4:
        depths.append(d)
        d += 1
    return tuple(depths)


def default_cardinalities(width: int) -> tuple[int, ...]:
    """Fig. 5.8: cardinality 1, 2, 4, ... 16 while each path keeps at least 8 channels (its
    hierarchical layers then have 4, 2 and 2)."""
    return tuple(c for c in (1, 2, 4, 8, 16) if width % c == 0 and width // c >= 8 and (width // c) % 4 == 0)


def ch5_setup(profile: str | Profile = "quick") -> Ch5Setup:
    """The chapter-5 scale of ``profile`` (its ``ch5`` and ``data`` sections, None-rules applied)."""
    prof = get_profile(profile)
    c, data = prof.ch5, prof.data
    width = c.width
    cores = os.cpu_count() or 1
    stem = c.stem_channels if c.stem_channels is not None else (max(4, width // 4), max(4, width // 2))
    return Ch5Setup(
        profile=prof, input_size=c.input_size, width=width, hg_depth=c.hg_depth,
        stem_channels=tuple(int(s) for s in stem), batch_size=c.batch_size, iterations=c.iterations,
        epochs=None if c.iterations is not None else c.epochs, lr=float(c.lr),
        lr_milestones=tuple(float(m) for m in c.lr_milestones), lr_gamma=float(c.lr_gamma), seeds=c.seeds,
        sweep_seeds=c.sweep_seeds if c.sweep_seeds is not None else c.seeds[:1],
        stage_fraction=float(c.stage_fraction), max_stacks=c.max_stacks,
        parsing_input_size=c.parsing_input_size if c.parsing_input_size is not None else c.input_size,
        parsing_zoom=float(c.parsing_zoom),
        depths=c.depths if c.depths is not None else default_depths(width),
        cardinalities=c.cardinalities if c.cardinalities is not None else default_cardinalities(width),
        real_twins=c.real_twins, workers=c.workers if c.workers is not None else min(2, cores),
        threads=c.threads, timing_repeats=c.timing_repeats, train_size=data.train_size,
        test_size=data.test_size, pifa_size=data.pifa_size, image_size=data.image_size, sigma=float(c.sigma),
        # inference is timed on 1 thread and on every core (the training's 1-thread-per-process choice
        # says nothing about how a deployed network would use the machine)
        packed_threads=tuple(dict.fromkeys(c.packed_threads if c.packed_threads is not None else (1, cores))),
        packed_batch=c.packed_batch, packed_repeats=c.packed_repeats, packed_images=c.packed_images,
        decoder=c.decoder, cpu_bf16=c.cpu_bf16, channels_last=c.channels_last, optimizer=c.optimizer,
        val_fraction=float(c.val_fraction),
    )


# --------------------------------------------------------------------------------------------------
# what is trained: a network and a recipe


def _multiple_of_4(value: float) -> int:
    return max(4, int(round(value / 4)) * 4)


@dataclass(frozen=True)
class NetSpec:
    """One network of chapter 5, independent of the profile's scale.

    ``block``: a family of ``fa_lib.models.blocks.BLOCKS`` (Fig. 5.3). ``width_scale``: the
    hourglass width relative to the profile's (Fig. 5.1b / Table 5.4: 192/256 = 0.75).
    ``mid_scale``: the bottleneck's middle width relative to the hourglass width (Fig. 5.3a: 0.5,
    Table 5.5 "Bottleneck (wider)": 192/256 = 0.75). ``depth``/``cardinality`` of the hierarchical
    block (Figs. 5.7/5.8). ``hourglass``: "standard" (Fig. 4.1) or "improved" (Fig. 5.6).
    ``outputs``: 68 heatmaps, or 7 class maps for face parsing (section 5.8).
    """

    block: str = "hierarchical"
    binary: bool = True
    width_scale: float = 1.0
    mid_scale: float | None = None
    depth: int | None = None
    cardinality: int | None = None
    hourglass: str = "standard"
    pooling: str = "max"
    relu_after: bool = False
    stacks: int = 1
    outputs: int = 68

    def block_kwargs(self, width: int) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.mid_scale is not None:
            kw["mid_channels"] = _multiple_of_4(width * self.mid_scale)
        if self.depth is not None:
            kw["depth"] = int(self.depth)
        if self.cardinality is not None:
            kw["cardinality"] = int(self.cardinality)
        return kw

    def fan_kwargs(self, width: int, hg_depth: int, stem_channels: tuple[int, int]) -> dict[str, Any]:
        w = width if self.width_scale == 1.0 else _multiple_of_4(width * self.width_scale)
        return dict(num_modules=self.stacks, width=w, num_landmarks=self.outputs, hg_depth=hg_depth,
                    pooling=self.pooling, block=self.block, binary=self.binary, hourglass=self.hourglass,
                    relu_after=self.relu_after, stem_channels=tuple(stem_channels),
                    block_kwargs=self.block_kwargs(w))

    def build(self, setup: Ch5Setup) -> FAN:
        """The network at the profile's scale."""
        return FAN(**self.fan_kwargs(setup.width, setup.hg_depth, setup.stem_channels))

    def thesis_parameters(self) -> int:
        """Parameter count of the same architecture at the thesis's scale (256 channels, depth-4
        hourglass, official stem), built on the ``meta`` device (no memory, no time)."""
        with torch.device("meta"):
            net = FAN(**self.fan_kwargs(THESIS_WIDTH, THESIS_HG_DEPTH, (64, 128)))
        return parameter_count(net)

    def describe(self) -> str:
        parts = [("binary" if self.binary else "real"), self.block]
        if self.width_scale != 1.0:
            parts.append(f"width x{self.width_scale:g}")
        if self.mid_scale is not None:
            parts.append(f"middle x{self.mid_scale:g}")
        if self.depth is not None:
            parts.append(f"depth {self.depth}")
        if self.cardinality is not None:
            parts.append(f"cardinality {self.cardinality}")
        if self.hourglass != "standard":
            parts.append(f"{self.hourglass} HG")
        if self.pooling != "max":
            parts.append(f"{self.pooling} pool")
        if self.relu_after:
            parts.append("+ReLU")
        if self.stacks != 1:
            parts.append(f"{self.stacks} stacks")
        if self.outputs != 68:
            parts.append(f"{self.outputs} outputs")
        return ", ".join(parts)


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: ``task`` "landmarks" (3D landmarks, heatmaps) or "parsing" (7-class
    label maps); ``loss`` "sigmoid_bce" (eq. 5.3), "l2" (Table 5.7) or "log_softmax" (5.8);
    ``augment``: the augmentation of section 5.5.1 (flip, rotation +-40, scale 0.7-1.3) or none
    (Table 5.6)."""

    task: str = "landmarks"
    loss: str = "sigmoid_bce"
    augment: bool = True

    def describe(self) -> str:
        return f"{self.task}, {self.loss}, {'augmented' if self.augment else 'no augmentation'}"


LANDMARKS = Recipe()
PARSING = Recipe(task="parsing", loss="log_softmax")
NO_AUGMENTATION = replace(LANDMARKS, augment=False)                  # Table 5.6
L2_LOSS = replace(LANDMARKS, loss="l2")                              # Table 5.7

#: the networks of the chapter (names used by the tables, the explorer and the tests)
OURS = NetSpec()                                                     # Fig. 5.3e, "Ours, Final"
BOTTLENECK = NetSpec(block="bottleneck")                             # Fig. 5.3a
WIDER = NetSpec(block="wider")                                       # Fig. 5.3b
MULTISCALE = NetSpec(block="multiscale")                             # Fig. 5.3c
MS_NO1X1 = NetSpec(block="multiscale_no1x1")                         # Fig. 5.3d
PLAIN_NO1X1 = NetSpec(block="bottleneck_no1x1")                      # Table 5.3
OURS_REDUCED = NetSpec(width_scale=192 / 256)                        # Fig. 5.1b, Table 5.4
BOTTLENECK_REAL = replace(BOTTLENECK, binary=False)                  # Table 5.1
BOTTLENECK_WIDER_REAL = NetSpec(block="bottleneck", binary=False, mid_scale=192 / 256)  # Table 5.5
OURS_REAL = replace(OURS, binary=False)                              # Table 5.5
OURS_AVG_POOL = replace(OURS, pooling="avg")                         # Table 5.8
OURS_RELU = replace(OURS, relu_after=True)                           # Table 5.9
OURS_IMPROVED = replace(OURS, hourglass="improved")                  # Table 5.14, Fig. 5.6
BLOCK_SPECS = {"bottleneck": BOTTLENECK, "wider": WIDER, "multiscale": MULTISCALE,
               "multiscale_no1x1": MS_NO1X1, "bottleneck_no1x1": PLAIN_NO1X1, "hierarchical": OURS}
#: Table 5.16's networks (section 5.8): "Binary, Ours" is the reduced block so the three have a similar size
PARSING_ROWS = (("Real, bottleneck", BOTTLENECK_REAL), ("Binary, bottleneck", BOTTLENECK),
                ("Binary, Ours", OURS_REDUCED))


def depth_spec(depth: int) -> NetSpec:
    """Fig. 5.7's network of block depth ``depth`` (3, the default block, is ``OURS`` itself)."""
    return OURS if depth == 3 else replace(OURS, depth=depth)


def cardinality_spec(cardinality: int) -> NetSpec:
    """Fig. 5.8's network of cardinality ``cardinality`` (1 is ``OURS`` itself)."""
    return OURS if cardinality == 1 else replace(OURS, cardinality=cardinality)


def stacked_spec(stacks: int) -> NetSpec:
    """Table 5.15's network of ``stacks`` binary hourglasses (trained stage-wise, 5.7.2)."""
    return replace(OURS, stacks=stacks)
