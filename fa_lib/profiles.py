"""The three reproduction profiles: the only place in the project that knows the scale knobs.

- ``smoke``: seconds per notebook; tiny data and models. Proves every path runs and writes results
  in the right schema. Used by the test-suite and CI.
- ``quick`` (default): a 2-core CPU with no dataset: the embedded synthetic benchmark, reduced widths
  and resolutions. Its results are committed in ``results/`` and always labelled quick-profile,
  synthetic data.
- ``full``: the thesis's own architectures and schedules, meant for a GPU and the real datasets under
  ``data_root`` (a large synthetic set otherwise).

A profile is a frozen dataclass made of typed sections: ``data`` (the synthetic benchmark's sizes,
shared by every chapter) and one section per chapter (``ch4``, ``ch5``, ...). Each chapter section
lists every knob the chapter reads, with **the thesis's value as the default**; the smoke and quick
profiles override some of them explicitly below, so ``fa-lib profiles`` prints exactly what runs. An
unknown knob, or a value of the wrong type, is an error (:func:`with_knobs`). Why the quick profile
uses the values it does is measured and shown in each chapter notebook's "choosing the scale" section.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Union

from fa_lib.heatmaps import DECODERS

#: the optimisers :class:`fa_lib.train.Trainer` builds (by name)
OPTIMIZERS = ("rmsprop", "adam", "sgd")

PROFILE_NAMES = ("smoke", "quick", "full")
DEFAULT_PROFILE = "quick"


# --------------------------------------------------------------------------------------------------
# validation shared by every section


def _matches(value: Any, annotation: Any) -> bool:
    """Does ``value`` fit the (simple) type ``annotation`` of a section field?"""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


class Section:
    """Base of the typed sections: checks every field's type when the section is made."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # lists from JSON / the command line become tuples
                object.__setattr__(self, f.name, value := tuple(value))
            if not _matches(value, hints[f.name]):
                raise TypeError(f"{type(self).__name__}.{f.name} must be {hints[f.name]}, got {value!r}")
        self.validate()

    def validate(self) -> None:
        """Cross-field checks of a section (overridden where a section has some)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True)
class DataScale(Section):
    """Sizes of the synthetic benchmark's derived datasets (number of faces) and image sizes."""

    image_size: int = 256          # rendered image side (px); FAN input crops are taken from it
    train_size: int = 2000         # 300-W-LP stand-in (training, 2D + 3D labels)
    test_size: int = 600           # yaw-balanced test set: equal counts in |yaw| 0-30, 30-60, 60-90
    pifa_size: int = 300           # AFLW-PIFA stand-in test set (grey, 34/21 points + visibility)
    pifa_train_size: int = 3901    # AFLW-PIFA stand-in training set (the thesis's 3,901)
    lowres_train_size: int = 2000  # 16x16 -> 64x64 pairs (chapter 6)
    lowres_test_size: int = 300
    parsing_size: int = 600        # face-parsing masks (chapter 5.8)
    real_data: bool = False        # True: read the real datasets under data_root when present


@dataclass(frozen=True)
class TrainConfig(Section):
    """One network's optimisation budget. The same record drives the trainer
    (:meth:`trainer_kwargs` -> :class:`fa_lib.train.Trainer`), is part of a trained run's cache key
    and is written as the training budget of every result's provenance. Defaults: thesis 4.3.2
    (RMSprop, lr 1e-4, minibatch 10, 40 epochs, drops at epochs 15 and 30)."""

    optimizer: str = "rmsprop"
    lr: float = 1e-4
    batch_size: int = 10
    iterations: int | None = None        # optimiser steps; when set, ``epochs`` is not used
    epochs: int | None = 40
    lr_milestones: tuple[float, ...] = (15 / 40, 30 / 40)  # fractions of the run
    lr_gamma: float = 0.1
    cpu_bf16: bool = False               # bfloat16 autocast on a CPU (Trainer ``cpu_bf16``)
    channels_last: bool = False          # channels-last memory (Trainer ``channels_last``)
    val_decoder: str = "quarter"         # heatmaps -> points of the validation NME of the history

    def validate(self) -> None:
        if self.iterations is None and self.epochs is None:
            raise ValueError("TrainConfig needs iterations or epochs")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.val_decoder not in DECODERS:
            raise ValueError(f"val_decoder must be one of {DECODERS}, got {self.val_decoder!r}")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of the run in (0, 1), got {self.lr_milestones}")

    @property
    def budget_epochs(self) -> int | None:
        """Epochs actually used (None when the budget is counted in iterations)."""
        return None if self.iterations is not None else self.epochs

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`fa_lib.train.Trainer` for this budget."""
        return dict(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size,
                    iterations=self.iterations, epochs=self.budget_epochs,
                    milestones=self.lr_milestones, gamma=self.lr_gamma, cpu_bf16=self.cpu_bf16,
                    channels_last=self.channels_last, val_decoder=self.val_decoder)

    def key_record(self) -> dict[str, Any]:
        """What of this budget changes the trained weights (a run's cache key): every field but the
        validation decoder, and the speed switches only when on (keys made before they existed stay
        valid)."""
        record = self.to_dict()
        record.pop("val_decoder")
        for switch in ("cpu_bf16", "channels_last"):
            record.pop(switch)
        return {**record, **self.speed_record()}

    def speed_record(self) -> dict[str, bool]:
        """The training-speed switches that are on (they change the rounding, so the weights)."""
        return {k: True for k in ("cpu_bf16", "channels_last") if getattr(self, k)}


@dataclass(frozen=True)
class Ch3Scale(Section):
    """Chapter 3 (CALE). Defaults: the thesis's networks (Tables 3.1-3.2: VGG-16 64...512 with fc6 7x7
    and fc7 4096 wide, the regressor's 9/13/13/15 kernels), 256 px crops, disc radius 0.05 and
    Gaussian std 0.025 of the face size (10 and 5 px for a 200 px face), and the stage lengths of
    section 3.1.4 in epochs: detector at stride 32 (10), at stride 8 (20), regressor alone (30),
    jointly (5).

    Networks: ``input_size`` (a multiple of 32), ``zoom`` (crop side relative to FAN's),
    ``width_divisor`` (every width divided by it), ``fc_channels``, ``fc6_kernel``,
    ``regressor_kernels``, ``batch_norm`` (vgg16_bn's layout; not the thesis's), ``n_points`` (34;
    the 21-point columns are the first 21 of them). Targets: ``disc_radius`` and ``sigma`` as
    fractions of the face size. Training: ``optimizer``, ``lr`` (dropped by ``lr_gamma`` at
    ``lr_milestones`` within each stage), ``joint_lr_factor`` (the joint stage fine-tunes at
    ``lr`` x this), ``detector_weight`` (eq. 3.1's weight in the joint loss), ``batch_size``,
    ``stage_iterations`` (optimiser steps of the four stages; None: ``stage_epochs``), ``seeds``,
    ``val_fraction`` (held-out training faces validated after every epoch), ``workers`` (runs trained
    at once on a CPU, one torch thread each; None: min(2, cores)), ``decoder``, ``cpu_bf16``,
    ``channels_last``. ``fig_faces``: faces of Fig. 3.5 and of the evidence explorer.
    ``vgg16_weights``: a file holding torchvision's ImageNet VGG-16 state_dict (``vgg16_bn``'s with
    ``batch_norm``), loaded into the detector before training as section 3.1.4 does (None: from
    scratch; nothing can be downloaded here).
    """

    input_size: int = 256
    zoom: float = 1.0
    width_divisor: int = 1
    fc_channels: int = 4096
    fc6_kernel: int = 7
    regressor_kernels: tuple[int, int, int, int] = (9, 13, 13, 15)
    batch_norm: bool = False
    n_points: int = 34
    disc_radius: float = 0.05
    sigma: float = 0.025
    optimizer: str = "rmsprop"
    lr: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.8,)
    lr_gamma: float = 0.1
    joint_lr_factor: float = 0.1
    detector_weight: float = 1.0
    batch_size: int = 10
    stage_iterations: tuple[int, int, int, int] | None = None
    stage_epochs: tuple[int, int, int, int] = (10, 20, 30, 5)
    seeds: tuple[int, ...] = (0,)
    val_fraction: float = 0.1
    workers: int | None = None
    decoder: str = "quarter"
    cpu_bf16: bool = False
    channels_last: bool = False
    fig_faces: int = 8
    vgg16_weights: str | None = None

    def validate(self) -> None:
        if self.input_size % 32:
            raise ValueError(f"ch3.input_size must be a multiple of 32 (FCN-8s), got {self.input_size}")
        if self.decoder not in DECODERS:
            raise ValueError(f"ch3.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"ch3.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.n_points < 21:
            raise ValueError(f"ch3.n_points must be >= 21 (the 21-point columns are its first 21), got {self.n_points}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"ch3.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.seeds:
            raise ValueError("ch3.seeds must name at least one seed")
        budget = self.stage_iterations if self.stage_iterations is not None else self.stage_epochs
        if len(budget) != 4 or any(int(b) <= 0 for b in budget):
            raise ValueError(f"ch3 needs four positive stage budgets (32s, 8s, regressor, joint), got {budget}")

    def stage_config(self, stage: int) -> TrainConfig:
        """The :class:`TrainConfig` of stage ``stage`` (0: detector at stride 32, 1: at stride 8,
        2: regressor alone, 3: jointly)."""
        lr = self.lr * (self.joint_lr_factor if stage == 3 else 1.0)
        steps = None if self.stage_iterations is None else int(self.stage_iterations[stage])
        return TrainConfig(optimizer=self.optimizer, lr=lr, batch_size=self.batch_size, iterations=steps,
                           epochs=None if steps is not None else int(self.stage_epochs[stage]),
                           lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma, cpu_bf16=self.cpu_bf16,
                           channels_last=self.channels_last, val_decoder=self.decoder)


@dataclass(frozen=True)
class Ch4Scale(Section):
    """Chapter 4 (FAN, 3D-FAN, 2D-to-3D-FAN, 3D-FAN-full). Defaults: the thesis (4.3.1-4.3.2, 4.8).

    Network: ``input_size``/``heatmap_size`` (256/64), ``stacks`` (4), ``width`` (256), ``hg_depth``
    (4), ``pooling`` (the Torch7 models used max), ``stem_channels`` (official (64, 128)).
    Training: RMSprop, ``batch_size``, ``lr`` (2D-to-3D-FAN: ``lr_2d_to_3d``), ``iterations`` (or
    ``epochs`` when None; 2D-to-3D-FAN: ``iterations_2d_to_3d``, None: the same), ``lr_milestones``
    (fractions of the run) / ``lr_gamma``, ``val_fraction``,
    ``sigma`` (std of the target Gaussians in heatmap px). Depth network (4.8): ResNet with
    ``depth_layers`` bottlenecks per stage (ResNet-152: (3, 8, 36, 3)) on ``depth_input_size`` px,
    ``depth_iterations`` steps (None: as the FANs). Table 4.4: ``size_rows`` (labels of the rows to
    run, None: all six), ``size_iterations`` (steps per size, None: the FANs' budget). Fig. 4.10:
    ``resolutions`` (face sizes, px). Speed table: ``speed_thesis_scale`` (also time the
    thesis-scale networks); ``timing_repeats``: rounds of the side-by-side step timings of the scale
    section. Fig. 4.6: ``convert_images`` (test faces given to ``fa-lib convert-ls3dw``, None: all).
    ``loader_workers``: data-loading processes. ``decoder``: how every evaluation turns heatmaps
    into points (:data:`fa_lib.heatmaps.DECODERS`: the official quarter-pixel rule, or the sub-pixel
    fit of :func:`fa_lib.heatmaps.decode_heatmaps_subpixel`). ``cpu_bf16`` / ``channels_last``:
    train with bfloat16 autocast on a CPU and channels-last memory (:class:`fa_lib.train.Trainer`;
    the thesis trained in float32 on GPUs).
    """

    input_size: int = 256
    heatmap_size: int = 64
    stacks: int = 4
    width: int = 256
    hg_depth: int = 4
    pooling: str = "max"
    stem_channels: tuple[int, int] = (64, 128)
    batch_size: int = 10
    lr: float = 1e-4
    lr_2d_to_3d: float = 1e-3
    iterations: int | None = None
    iterations_2d_to_3d: int | None = None
    epochs: int | None = 40
    lr_milestones: tuple[float, ...] = (15 / 40, 30 / 40)
    lr_gamma: float = 0.1
    val_fraction: float = 0.1
    sigma: float = 1.0
    depth_layers: tuple[int, int, int, int] = (3, 8, 36, 3)
    depth_input_size: int = 256
    depth_iterations: int | None = None
    size_rows: tuple[str, ...] | None = None
    size_iterations: int | None = None
    resolutions: tuple[int, ...] = (10, 15, 20, 30, 40, 60, 80, 120)
    speed_thesis_scale: bool = True
    timing_repeats: int = 2
    convert_images: int | None = None
    loader_workers: int = 0
    decoder: str = "quarter"
    cpu_bf16: bool = False
    channels_last: bool = False

    def validate(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"ch4.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.input_size % self.heatmap_size:
            raise ValueError(f"ch4.input_size {self.input_size} is not a multiple of heatmap_size {self.heatmap_size}")
        if self.iterations is None and self.epochs is None:
            raise ValueError("ch4 needs iterations or epochs")


@dataclass(frozen=True)
class Ch5Scale(Section):
    """Chapter 5 (hierarchical binary networks). Defaults: the thesis (5.5.1: RMSprop 2.5e-4 dropped
    four times to 5e-5, minibatch 10, 55 epochs; 256 px input, width 256, hourglass depth 4).

    Networks: ``input_size`` (heatmaps are input/4), ``width``, ``hg_depth``, ``stem_channels``
    (None: the official (64, 128) scaled with the width, i.e. (width/4, width/2)). Training:
    ``lr`` dropped by ``lr_gamma`` at ``lr_milestones``, ``batch_size``, ``iterations`` (or
    ``epochs``), repeated over ``seeds`` (``sweep_seeds`` for the depth/cardinality sweeps and the
    stacks; None: the first seed). ``stage_fraction``: budget of each phase of the stage-wise stacks
    (5.7.2) as a fraction of one run; ``max_stacks``. Face parsing: ``parsing_input_size`` (None: as
    ``input_size``), ``parsing_zoom`` (crop relative to FAN's convention). ``sigma``: std (heatmap
    px) of the targets. ``depths``/``cardinalities``: the variants of Figs. 5.7/5.8 (None: every
    depth while the last layer keeps 4 channels, every cardinality while a path keeps 8).
    ``real_twins``: also train the real twin of every Fig. 5.3 block. ``workers``: runs trained at
    once on a CPU, one torch thread each (None: min(2, cores)); ``threads``: torch threads of the
    notebook's process (None: torch's default); ``timing_repeats``: rounds of the step timings.
    Packed inference: ``packed_threads`` (None: 1 and every core), ``packed_batch``,
    ``packed_repeats``, ``packed_images`` (None: every test face). ``decoder``: heatmaps to points
    in every evaluation (:data:`fa_lib.heatmaps.DECODERS`). ``cpu_bf16`` / ``channels_last``: train
    with bfloat16 autocast on a CPU and channels-last memory (:class:`fa_lib.train.Trainer`).
    ``optimizer``: one of :data:`fa_lib.train.OPTIMIZERS` (the thesis: RMSprop). ``val_fraction``:
    part of the training set held out to validate each landmark run after every epoch (the learning
    curves of the scale section; 0: none, the thesis's protocol).
    """

    input_size: int = 256
    width: int = 256
    hg_depth: int = 4
    stem_channels: tuple[int, int] | None = None
    batch_size: int = 10
    iterations: int | None = None
    epochs: int | None = 55
    lr: float = 2.5e-4
    lr_milestones: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    lr_gamma: float = (5e-5 / 2.5e-4) ** 0.25
    sigma: float = 1.0
    seeds: tuple[int, ...] = (0,)
    sweep_seeds: tuple[int, ...] | None = None
    stage_fraction: float = 0.5
    max_stacks: int = 3
    parsing_input_size: int | None = None
    parsing_zoom: float = 1.0
    depths: tuple[int, ...] | None = None
    cardinalities: tuple[int, ...] | None = None
    real_twins: bool = True
    workers: int | None = None
    threads: int | None = None
    timing_repeats: int = 3
    packed_threads: tuple[int, ...] | None = None
    packed_batch: int = 16
    packed_repeats: int = 5
    packed_images: int | None = None
    decoder: str = "quarter"
    cpu_bf16: bool = False
    channels_last: bool = False
    optimizer: str = "rmsprop"
    val_fraction: float = 0.0

    def validate(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"ch5.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"ch5.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"ch5.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.input_size % 4:
            raise ValueError(f"ch5.input_size must be a multiple of 4 (heatmaps are input/4), got {self.input_size}")
        if self.iterations is None and self.epochs is None:
            raise ValueError("ch5 needs iterations or epochs")
        if not self.seeds:
            raise ValueError("ch5.seeds must name at least one seed")


@dataclass(frozen=True)
class Ch6Scale(Section):
    """Chapter 6 (Super-FAN). Defaults: the thesis's scale where it gives one (the 12-3-2 generator and
    SR-ResNet's 16 blocks at width 64, a 2-stack FAN of width 256, RMSprop from 2.5e-4 down to 1e-5 over
    60 epochs for the non-GAN models, 5 epochs with the GAN, 5 epochs end to end, eq. 6.5's weights).

    Generator and critic: ``generator_width``, ``generator_blocks`` (16/32/64 px), ``generator_output``
    (``"direct"`` or ``"bilinear-residual"``, see :class:`fa_lib.models.superfan.SRGenerator`; for
    every generator, SR-ResNet's too), ``sr_resnet_blocks``, ``critic_width``. The FANs (the frozen teacher on HR faces that also evaluates every method, the
    student trained end to end, the retrained FAN-bilinear) take the 64 px faces directly (16 px
    heatmaps): ``fan_stacks``, ``fan_width``, ``fan_hg_depth`` (2: the hourglass bottoms out at 4x4, as
    the thesis's FAN does on its 64 px heatmaps), ``fan_stem_channels``, ``sigma`` (px of
    the 16 px maps), ``fan_lr``, ``fan_batch_size``, ``fan_iterations`` (None: ``fan_epochs``).
    Feature networks: ``resnet50_weights`` / ``vgg19_weights`` (files with torchvision's ImageNet
    state_dicts); without them stand-ins are pretrained on the synthetic faces
    (``standin_iterations`` steps at ``standin_lr``, batch ``standin_batch_size``; the VGG-19 stand-in's
    widths divided by ``vgg_width_divisor``). Super-resolution: ``optimizer``, ``lr`` (times
    ``lr_gamma`` at ``lr_milestones``), ``batch_size``, ``sr_iterations``/``gan_iterations``/
    ``joint_iterations`` (None: ``sr_epochs``/``gan_epochs``/``joint_epochs``; the GAN, end-to-end and
    degraded stages at the constant ``finetune_lr``, the thesis's 2.5e-4), ``adversarial_weight`` (eq. 6.5's
    zeta, 0.1), ``srgan_adversarial_weight``
    (SRGAN's 1e-3), ``degraded_iterations`` (None: ``gan_epochs``; the fine-tuning on degraded inputs
    of section 6.3.3 for real tiny faces). ``workers`` (runs trained at once on a CPU, one
    torch thread each; None: min(2, cores)), ``cpu_bf16``, ``auc_threshold`` (10%), ``fig_faces``,
    ``explorer_sizes`` (face sizes of the resolution explorer, px).
    """

    generator_width: int = 64
    generator_blocks: tuple[int, int, int] = (12, 3, 2)
    generator_output: str = "direct"
    sr_resnet_blocks: int = 16
    critic_width: int = 64
    fan_stacks: int = 2
    fan_width: int = 256
    fan_hg_depth: int = 2
    fan_stem_channels: tuple[int, int] = (64, 128)
    sigma: float = 1.0
    fan_lr: float = 1e-4
    fan_batch_size: int = 10
    fan_iterations: int | None = None
    fan_epochs: int = 40
    resnet50_weights: str | None = None
    vgg19_weights: str | None = None
    vgg_width_divisor: int = 1
    standin_iterations: int = 5000
    standin_lr: float = 1e-3
    standin_batch_size: int = 32
    optimizer: str = "rmsprop"
    lr: float = 2.5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.8)
    lr_gamma: float = 0.2
    batch_size: int = 16
    sr_iterations: int | None = None
    sr_epochs: int = 60
    gan_iterations: int | None = None
    gan_epochs: int = 5
    joint_iterations: int | None = None
    joint_epochs: int = 5
    finetune_lr: float = 2.5e-4
    adversarial_weight: float = 0.1
    srgan_adversarial_weight: float = 1e-3
    degraded_iterations: int | None = None
    workers: int | None = None
    cpu_bf16: bool = False
    auc_threshold: float = 0.10
    fig_faces: int = 6
    explorer_sizes: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"ch6.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.generator_output not in ("direct", "bilinear-residual"):
            raise ValueError(f"ch6.generator_output must be 'direct' or 'bilinear-residual', got {self.generator_output!r}")
        if len(self.generator_blocks) != 3 or min(self.generator_blocks) < 0:
            raise ValueError(f"ch6.generator_blocks are three counts (16, 32, 64 px), got {self.generator_blocks}")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"ch6.lr_milestones are fractions of the run in (0, 1), got {self.lr_milestones}")
        if not 0 < self.auc_threshold <= 1:
            raise ValueError(f"ch6.auc_threshold is a fraction in (0, 1], got {self.auc_threshold}")
        if min(self.explorer_sizes, default=0) < 4 or max(self.explorer_sizes, default=0) > 64:
            raise ValueError(f"ch6.explorer_sizes are face sizes in [4, 64] px, got {self.explorer_sizes}")
        for name in ("fan_iterations", "sr_iterations", "gan_iterations", "joint_iterations", "degraded_iterations"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"ch6.{name} must be positive (or None for the epoch budget), got {value}")


#: the profile's sections by name (a chapter adds its own here)
SECTIONS: dict[str, type[Section]] = {"data": DataScale, "ch3": Ch3Scale, "ch4": Ch4Scale, "ch5": Ch5Scale,
                                      "ch6": Ch6Scale}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: DataScale = field(default_factory=DataScale)
    ch3: Ch3Scale = field(default_factory=Ch3Scale)
    ch4: Ch4Scale = field(default_factory=Ch4Scale)
    ch5: Ch5Scale = field(default_factory=Ch5Scale)
    ch6: Ch6Scale = field(default_factory=Ch6Scale)

    def section(self, name: str) -> Section:
        if name not in SECTIONS:
            raise ValueError(f"unknown profile section {name!r}; choose one of {', '.join(SECTIONS)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="seconds per notebook: tiny synthetic data and models; checks paths and schemas "
                    "(nothing is expected to learn in a few steps)",
        data=DataScale(image_size=128, train_size=24, test_size=12, pifa_size=12, pifa_train_size=24,
                       lowres_train_size=24, lowres_test_size=8, parsing_size=12),
        ch3=Ch3Scale(input_size=32, zoom=0.75, width_divisor=16, fc_channels=16, fc6_kernel=1,
                     regressor_kernels=(3, 3, 3, 3), batch_norm=True, lr=1e-3, batch_size=4,
                     stage_iterations=(1, 1, 1, 1), decoder="subpixel", fig_faces=2),
        ch4=Ch4Scale(input_size=64, heatmap_size=16, stacks=1, width=32, hg_depth=2, stem_channels=(16, 32),
                     batch_size=4, lr=2.5e-4, lr_2d_to_3d=2.5e-3, iterations=3, epochs=None,
                     depth_layers=(1, 1, 1, 1), depth_input_size=32, resolutions=(8, 16),
                     speed_thesis_scale=False, timing_repeats=1, convert_images=6, decoder="subpixel"),
        ch5=Ch5Scale(input_size=32, width=16, hg_depth=2, batch_size=4, iterations=2, epochs=None,
                     max_stacks=2, threads=1, timing_repeats=1, packed_repeats=2, decoder="subpixel",
                     val_fraction=0.1),
        ch6=Ch6Scale(generator_width=8, generator_blocks=(1, 1, 1), sr_resnet_blocks=1, critic_width=8,
                     fan_stacks=2, fan_width=16, fan_hg_depth=1, fan_stem_channels=(8, 16), fan_lr=1e-3,
                     fan_batch_size=4, fan_iterations=2, vgg_width_divisor=16, standin_iterations=2,
                     standin_batch_size=4, batch_size=4, sr_iterations=2, gan_iterations=1, joint_iterations=1,
                     degraded_iterations=1, fig_faces=2, explorer_sizes=(8, 16, 64)),
    ),
    "quick": Profile(
        name="quick",
        description="2-core CPU, embedded synthetic benchmark, reduced widths/resolutions and short "
                    "schedules (the chapter notebooks show the measurements behind each value)",
        data=DataScale(image_size=256, train_size=3000, test_size=600, pifa_size=300, pifa_train_size=2400,
                       lowres_train_size=3000, lowres_test_size=300, parsing_size=600),
        ch3=Ch3Scale(input_size=96, zoom=0.75, width_divisor=4, fc_channels=256, fc6_kernel=3,
                     regressor_kernels=(5, 7, 7, 9), batch_norm=True, lr=1e-3, lr_gamma=0.2, batch_size=8,
                     stage_iterations=(400, 3200, 3200, 400), seeds=(0, 1), workers=2, decoder="subpixel",
                     cpu_bf16=True),
        ch4=Ch4Scale(input_size=128, heatmap_size=32, stacks=1, width=64, hg_depth=3, stem_channels=(32, 64),
                     batch_size=10, lr=1e-3, lr_2d_to_3d=1e-3, iterations=9000, iterations_2d_to_3d=4500,
                     epochs=None,
                     lr_milestones=(0.8,), sigma=2.0, depth_layers=(1, 1, 1, 1), depth_input_size=64,
                     depth_iterations=1500, size_iterations=1500, resolutions=(10, 15, 20, 30, 40, 60, 80),
                     convert_images=150, loader_workers=1, decoder="subpixel", cpu_bf16=True,
                     channels_last=True),
        ch5=Ch5Scale(input_size=96, width=64, hg_depth=2, batch_size=4, iterations=2800, epochs=None, lr=1e-2,
                     lr_milestones=(0.8,), lr_gamma=0.2, sigma=2.0, seeds=(0, 1), sweep_seeds=(0,),
                     parsing_zoom=0.6, cardinalities=(1, 2, 4), workers=2, threads=1, packed_batch=16,
                     packed_repeats=5, decoder="subpixel", cpu_bf16=True, channels_last=True, val_fraction=0.1),
        ch6=Ch6Scale(generator_width=32, generator_output="bilinear-residual", critic_width=32, fan_width=64,
                     fan_stem_channels=(32, 64), fan_lr=1e-3, fan_iterations=3000,
                     vgg_width_divisor=4, standin_iterations=800, standin_batch_size=16, optimizer="adam", lr=1e-3,
                     lr_milestones=(0.8,), lr_gamma=0.1, sr_iterations=1200, gan_iterations=300,
                     joint_iterations=400, degraded_iterations=300, finetune_lr=1e-4, adversarial_weight=1e-3,
                     workers=2, cpu_bf16=True),
    ),
    "full": Profile(
        name="full",
        description="the thesis's architectures and schedules: GPU and the real datasets under "
                    "data_root (a large synthetic set otherwise)",
        data=DataScale(image_size=256, train_size=60000, test_size=3000, pifa_size=1299, pifa_train_size=3901,
                       lowres_train_size=60000, lowres_test_size=3000, parsing_size=3000,
                       real_data=True),
        ch4=Ch4Scale(),
        # packed inference runs on the CPU, where the thesis's float network is slow: its outputs
        # are compared on 300 test faces and timed on batches of 4, 3 rounds
        ch5=Ch5Scale(workers=1, packed_images=300, packed_batch=4, packed_repeats=3),
    ),
}


def get_profile(name: str | Profile = DEFAULT_PROFILE, **overrides: Any) -> Profile:
    """Return the named profile, optionally with whole fields (``description=``, ``ch5=Ch5Scale(...)``)
    replaced. Raises ``ValueError`` naming the valid profiles for an unknown name."""
    if isinstance(name, Profile):
        prof = name
    else:
        key = str(name).strip().lower()
        if key not in _PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
        prof = _PROFILES[key]
    if not overrides:
        return prof
    unknown = set(overrides) - {f.name for f in fields(Profile)}
    if unknown:
        raise ValueError(f"unknown profile field(s) {sorted(unknown)}; fields: "
                         f"{', '.join(f.name for f in fields(Profile))}")
    return replace(prof, **overrides)


def with_knobs(profile: str | Profile, section: str, **knobs: Any) -> Profile:
    """A copy of ``profile`` with some knobs of one section changed, e.g.
    ``with_knobs("smoke", "ch5", iterations=1, width=16)``. An unknown section or knob is a
    ``ValueError`` that lists the valid ones; a value of the wrong type is a ``TypeError``."""
    prof = get_profile(profile)
    current = prof.section(section)
    valid = {f.name for f in fields(current)}
    unknown = sorted(set(knobs) - valid)
    if unknown:
        raise ValueError(f"unknown {section} knob(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return replace(prof, **{section: replace(current, **knobs)})


def parse_knobs(assignments: Mapping[str, Any] | list[str]) -> dict[str, dict[str, Any]]:
    """``["ch5.iterations=3", "data.test_size=30"]`` -> ``{"ch5": {"iterations": 3}, "data": {...}}``
    (values are read as Python literals, so tuples and None work)."""
    import ast

    items = assignments.items() if isinstance(assignments, Mapping) else (a.split("=", 1) for a in assignments)
    out: dict[str, dict[str, Any]] = {}
    for key, value in items:
        if "." not in key:
            raise ValueError(f"a knob is written section.name=value, got {key!r}")
        section, knob = key.split(".", 1)
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        out.setdefault(section, {})[knob] = value
    return out
