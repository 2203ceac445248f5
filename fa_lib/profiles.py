"""The three reproduction profiles: the only place in the project that knows the scale knobs.

- ``smoke``: seconds per notebook; tiny data and models. Proves every path runs and writes results
  in the right schema. Used by the test-suite and CI.
- ``quick`` (default): a 2-core CPU with no dataset: the embedded synthetic benchmark, reduced widths
  and resolutions, each chapter in about 30 minutes or less. Its results are committed in
  ``results/`` and always labelled quick-profile, synthetic data.
- ``full``: the thesis's own architectures and schedules (chapter 4.3.2: RMSprop, lr 1e-4, batch 10,
  40 epochs; 256 px input, 64 px heatmaps, 4 stacks, 256 channels), meant for a GPU and the real
  datasets under ``data_root`` (a large synthetic set otherwise).

A profile is a frozen dataclass made of one section per concern. Experiments read the section they
need (``get_profile("quick").fan.stacks``) and never hard-code a scale of their own. Sections are
plain data so that a profile can be written into every result's provenance JSON.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

PROFILE_NAMES = ("smoke", "quick", "full")
DEFAULT_PROFILE = "quick"


@dataclass(frozen=True)
class DataScale:
    """Sizes of the synthetic benchmark's derived datasets (number of faces) and image sizes."""

    image_size: int = 256          # rendered image side (px); FAN input crops are taken from it
    train_size: int = 2000         # 300-W-LP stand-in (training, 2D + 3D labels)
    test_size: int = 600           # yaw-balanced test set: equal counts in |yaw| 0-30, 30-60, 60-90
    pifa_size: int = 300           # AFLW-PIFA stand-in (grey, 34/21 points + visibility)
    lowres_train_size: int = 2000  # 16x16 -> 64x64 pairs (chapter 6)
    lowres_test_size: int = 300
    parsing_size: int = 600        # face-parsing masks (chapter 5.8)
    real_data: bool = False        # True: read the real datasets under data_root when present


@dataclass(frozen=True)
class FanScale:
    """FAN / hourglass scale knobs (chapter 4; also the base of chapters 5 and 6)."""

    input_size: int = 256          # crop fed to the network (thesis: 256)
    heatmap_size: int = 64         # thesis: 64 (input / 4)
    stacks: int = 4                # number of stacked hourglasses (thesis: 4)
    width: int = 256               # channels inside the hourglass (thesis: 256)
    hg_depth: int = 4              # recursion depth of each hourglass (thesis: 4)
    pooling: str = "max"           # thesis (Torch7) used max; the PyTorch port and weights use avg


@dataclass(frozen=True)
class TrainScale:
    """Optimisation budget (thesis 4.3.2: RMSprop, lr 1e-4, minibatch 10, 40 epochs, drops at 15/30)."""

    batch_size: int = 10
    epochs: int = 40
    iterations: int | None = None  # when set, overrides epochs (CPU budgets are counted in steps)
    lr: float = 1e-4
    lr_milestones: tuple[float, ...] = (15 / 40, 30 / 40)  # fractions of the run
    lr_gamma: float = 0.1
    val_fraction: float = 0.1
    seeds: tuple[int, ...] = (0,)  # repeated runs where orderings are close (chapter 5)
    workers: int = 0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: DataScale = field(default_factory=DataScale)
    fan: FanScale = field(default_factory=FanScale)
    train: TrainScale = field(default_factory=TrainScale)
    # chapter-specific knobs that have no natural section; keys are documented where they are read
    extra: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """Look up a chapter-specific knob from ``extra``."""
        return dict(self.extra).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra"] = dict(self.extra)
        return d


_PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="seconds per notebook: tiny synthetic data and models; checks paths and schemas",
        data=DataScale(image_size=128, train_size=24, test_size=12, pifa_size=12,
                       lowres_train_size=24, lowres_test_size=8, parsing_size=12),
        fan=FanScale(input_size=64, heatmap_size=16, stacks=1, width=32, hg_depth=2, pooling="max"),
        train=TrainScale(batch_size=4, epochs=1, iterations=3, lr=2.5e-4, seeds=(0,)),
        # chapter 4 (fa_lib.experiments.ch4): the smallest networks that exercise every code path
        # (whole smoke notebook ~30-60 s here); nothing is expected to learn in 3 steps
        extra=(("ch4_stem_channels", (16, 32)), ("ch4_depth_layers", (1, 1, 1, 1)),
               ("ch4_depth_input_size", 32), ("ch4_resolutions", (8, 16)),
               ("ch4_speed_thesis_scale", False)),
    ),
    "quick": Profile(
        name="quick",
        description="2-core CPU, embedded synthetic benchmark, reduced widths/resolutions, "
                    "about 30 minutes per chapter",
        data=DataScale(image_size=256, train_size=3000, test_size=600, pifa_size=300,
                       lowres_train_size=3000, lowres_test_size=300, parsing_size=600),
        fan=FanScale(input_size=128, heatmap_size=32, stacks=2, width=64, hg_depth=3, pooling="max"),
        train=TrainScale(batch_size=16, epochs=8, iterations=None, lr=2.5e-4, seeds=(0, 1)),
        # chapter 4 (fa_lib.experiments.ch4). Measured on this 2-core CPU (one RMSprop step, batch
        # 16, CPU time on 1 thread while other jobs ran; notebook ch4_fan explains the choice):
        # - ch4_stem_channels: the official stem (64, 128) costs ~700 ms of a 1-stack step at
        #   128 px (918 ms in all); (32, 64) ~230 ms (428 ms in all); each width-64 stack ~200 ms.
        # - ch4_batch_size 10: the thesis's minibatch (4.3.2); ~0.6x the cost of a batch-16 step,
        #   so more steps fit the budget (what matters to leave the initial all-zero-heatmap plateau).
        # - ch4_sigma 2 and ch4_lr 1e-3: with sigma 1 and lr 2.5e-4 (milestones at 37.5% / 75%),
        #   3D-FAN's validation NME was still 81% after 169 steps (mean shape: ~25%): stuck on the
        #   plateau. With sigma 2 and lr 1e-3 a 1-stack FAN had left it after 200 steps (loss below
        #   the all-zero level) but was not yet better than the mean shape (test NME 21.9%):
        #   hence more iterations (ch4_iterations) and one late lr drop (ch4_lr_milestones).
        #   Not measured further: the machine was shared by ~7 jobs (load 5-7).
        # - ch4_iterations 600: nine networks (2D-, 3D-, 2D-to-3D-FAN, the depth ResNet and five
        #   more Table 4.4 sizes) at ~2-3 s wall per iteration of all nine at batch 10 (estimate
        #   from the batch-16 step times, 2 threads): 20-30 min of training.
        # - ch4_depth_layers/ch4_depth_input_size: ResNet-152 at 128 px would dominate the budget;
        #   one bottleneck per stage at 64 px: 8.4M parameters, 378 ms/step (batch 16).
        # - ch4_lr_2d_to_3d: the thesis's 10x rate for 2D-to-3D-FAN is not used (1e-3 is already
        #   10x the thesis's FAN rate).
        # - ch4_loader_workers: the per-sample transforms are many tiny torch ops; in the training
        #   process's 2-thread pool on a busy machine they cost 30 ms/sample (more than the step
        #   itself), in a 1-thread loader process 1.3 ms (2D-to-3D-FAN's guide maps: 8.7 ms).
        extra=(("ch4_stem_channels", (32, 64)), ("ch4_batch_size", 10), ("ch4_sigma", 2.0),
               ("ch4_lr", 1e-3), ("ch4_lr_milestones", (0.8,)), ("ch4_iterations", 600),
               ("ch4_loader_workers", 1), ("ch4_depth_layers", (1, 1, 1, 1)),
               ("ch4_depth_input_size", 64), ("ch4_depth_iterations", 600), ("ch4_lr_2d_to_3d", 1e-3),
               ("ch4_resolutions", (10, 15, 20, 30, 40, 60, 80))),
    ),
    "full": Profile(
        name="full",
        description="the thesis's architectures and schedules: GPU and the real datasets under "
                    "data_root (a large synthetic set otherwise)",
        data=DataScale(image_size=256, train_size=60000, test_size=3000, pifa_size=1200,
                       lowres_train_size=60000, lowres_test_size=3000, parsing_size=3000,
                       real_data=True),
        fan=FanScale(input_size=256, heatmap_size=64, stacks=4, width=256, hg_depth=4, pooling="max"),
        train=TrainScale(batch_size=10, epochs=40, iterations=None, lr=1e-4, seeds=(0,)),
        # chapter 4: the thesis's networks (official stem, ResNet-152 depth network at 256 px,
        # 2D-to-3D-FAN at lr 1e-3, section 4.3.2)
        extra=(("ch4_stem_channels", (64, 128)), ("ch4_depth_layers", (3, 8, 36, 3)),
               ("ch4_depth_input_size", 256), ("ch4_lr_2d_to_3d", 1e-3)),
    ),
}


def get_profile(name: str | Profile = DEFAULT_PROFILE, **overrides: Any) -> Profile:
    """Return the named profile, optionally with top-level fields replaced.

    Raises ``ValueError`` naming the valid profiles for an unknown name.
    """
    if isinstance(name, Profile):
        prof = name
    else:
        key = str(name).strip().lower()
        if key not in _PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
        prof = _PROFILES[key]
    return replace(prof, **overrides) if overrides else prof


def with_extra(profile: Profile, **knobs: Any) -> Profile:
    """A copy of ``profile`` with chapter-specific knobs added to ``extra``."""
    merged = dict(profile.extra)
    merged.update(knobs)
    return replace(profile, extra=tuple(sorted(merged.items())))
