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
    ),
    "quick": Profile(
        name="quick",
        description="2-core CPU, embedded synthetic benchmark, reduced widths/resolutions, "
                    "about 30 minutes per chapter",
        data=DataScale(image_size=256, train_size=3000, test_size=600, pifa_size=300,
                       lowres_train_size=3000, lowres_test_size=300, parsing_size=600),
        fan=FanScale(input_size=128, heatmap_size=32, stacks=2, width=64, hg_depth=3, pooling="max"),
        train=TrainScale(batch_size=16, epochs=8, iterations=None, lr=2.5e-4, seeds=(0, 1)),
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
