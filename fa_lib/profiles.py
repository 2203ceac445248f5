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
               ("ch4_speed_thesis_scale", False), ("ch4_convert_images", 6),
               # chapter 5 (fa_lib.experiments.ch5): every table, figure and the explorer with the
               # smallest networks (32 px crops, width 16: ~40 runs of 2 steps); nothing learns
               ("ch5_input_size", 32), ("ch5_width", 16), ("ch5_hg_depth", 2), ("ch5_batch_size", 4),
               ("ch5_iterations", 2), ("ch5_timing_repeats", 1), ("ch5_max_stacks", 2), ("ch5_threads", 1),
               ("ch5_packed_repeats", 2)),
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
        # - ch4_iterations 1200, ch4_stacks 1: a probe (1-stack 2D-FAN, this config, lr drop at 80%)
        #   went from validation NME 18.1% (step 270) to 12.8% (540), 8.9% (810) and 8.0% (1000;
        #   test 7.9%, mean shape 21.4%): it learns and is still improving at the end. A 600-step
        #   run left every AUC@7% at 0 (test NME 11.8% 2D, 13.7% 3D). On the free 2-core machine a
        #   1-stack step costs 0.18 s at batch 10 (2 stacks ~0.3 s), so 1200 steps per network keep
        #   the chapter near 25 minutes. (Two chapters training at once made steps 5-7x slower.)
        # - ch4_size_iterations 300 (ch4_size_rows unset: all six rows): Table 4.4 retrains 3D-FAN
        #   per size; the 24M/18M/12M/6M/4M/2M layouts (4..1 stacks, then narrower) each get the
        #   same 300 steps (the chapter's own layout included) so the table compares like with like
        #   at a short budget. Measured steps at batch 10 on the free machine: 1 stack ~0.18-0.2 s,
        #   2 stacks 0.28 s (84 s for 300 steps), so the 4- and 3-stack rows add ~4-5 minutes
        #   (whole table ~9 minutes; the chapter ~30). A previous quick run with only the 12M..2M
        #   rows left every AUC@7% at 0 after 300 steps: the table therefore also has a mean-NME
        #   column, and the verdict uses it when every AUC is ~0 (ch4.narrate_table_4_4).
        # - ch4_convert_images 150: Fig. 4.6 writes 150 test faces (50 per |yaw| bin) as PNG + .pts
        #   and runs fa-lib convert-ls3dw on them twice (with the .pts files, and guided by 2D-FAN,
        #   one face at a time). Measured with the trained quick networks while the machine was
        #   shared (load 3): 54 s for 150 faces, 137 s for 300 (before the 2D-FAN was BN-folded).
        # - ch4_depth_layers/ch4_depth_input_size: ResNet-152 at 128 px would dominate the budget;
        #   one bottleneck per stage at 64 px: 8.4M parameters, 378 ms/step (batch 16).
        # - ch4_lr_2d_to_3d: the thesis's 10x rate for 2D-to-3D-FAN is not used (1e-3 is already
        #   10x the thesis's FAN rate).
        # - ch4_loader_workers: the per-sample transforms are many tiny torch ops; in the training
        #   process's 2-thread pool on a busy machine they cost 30 ms/sample (more than the step
        #   itself), in a 1-thread loader process 1.3 ms (2D-to-3D-FAN's guide maps: 8.7 ms).
        extra=(("ch4_stem_channels", (32, 64)), ("ch4_batch_size", 10), ("ch4_sigma", 2.0),
               ("ch4_lr", 1e-3), ("ch4_lr_milestones", (0.8,)), ("ch4_iterations", 1200),
               ("ch4_stacks", 1), ("ch4_size_iterations", 300), ("ch4_convert_images", 150),
               ("ch4_loader_workers", 1), ("ch4_depth_layers", (1, 1, 1, 1)),
               ("ch4_depth_input_size", 64), ("ch4_depth_iterations", 400), ("ch4_lr_2d_to_3d", 1e-3),
               ("ch4_resolutions", (10, 15, 20, 30, 40, 60, 80)),
               # chapter 5 (fa_lib.experiments.ch5; notebook ch5_binary times the candidates). Measured
               # here, one thread, CPU time, machine shared by ~7 jobs (load 4-7), so orders only:
               # - ch5_input_size 64 / width 64 / hg_depth 2 (16 px heatmaps): a binary "Ours" step at
               #   batch 16 costs ~130 ms (real twin ~80 ms); 128 px crops cost 3.4x, 96 px 2x. The
               #   chapter trains ~50 runs (5 blocks, twins, ablations, sweeps, stacks, parsing, 2 seeds).
               # - ch5_threads 1 and ch5_workers 2: with two torch threads on the busy machine a step
               #   took 10x longer (OpenMP threads waiting for each other); two runs in two 1-thread
               #   processes use both cores fully.
               # - ch5_sigma 2, ch5_lr 1e-3, one late drop (x0.2 = the thesis's 2.5e-4 -> 5e-5): with
               #   sigma 1 and the thesis's four evenly spaced drops from 2.5e-4 every network was still
               #   at ~mean-shape error after 300 steps (NME 24-43%); late drop alone: real "Ours"
               #   14%, binary 31%; + sigma 2: 11% / 20%.
               # - ch5_batch_size 4, ch5_iterations 800: at equal compute, batch 8 x 600 steps gave
               #   9.3% / 17.7% and batch 4 x 1200 steps 9.9% / 14.3%: binary nets gain from more
               #   updates. 800 steps keep the ~50 runs near 20 minutes on two quiet cores.
               # - ch5_parsing_zoom 0.6: the parsing crop is 0.6x FAN's, so the eyes and lips cover a
               #   few pixels of the 16 px output instead of ~1.
               # - ch5_cardinalities (1, 2, 4): cardinality 8 has 24 tiny convolutions per block and
               #   costs several times a base step.
               # - ch5_packed_batch 16, ch5_packed_repeats 5: packed inference (binary nets through the
               #   XNOR kernels) is timed on 16 test faces, min of 5 interleaved rounds, on 1 thread and
               #   on every core (ch5_packed_threads defaults to (1, cpu count)); an untrained width-64
               #   net at 64 px took 2.4-6.2 ms/image float and 0.5-1.2 packed on one thread here.
               ("ch5_input_size", 64), ("ch5_width", 64), ("ch5_hg_depth", 2), ("ch5_batch_size", 4),
               ("ch5_iterations", 800), ("ch5_lr", 1e-3), ("ch5_lr_milestones", (0.8,)),
               ("ch5_lr_gamma", 0.2), ("ch5_sigma", 2.0), ("ch5_seeds", (0, 1)), ("ch5_sweep_seeds", (0,)),
               ("ch5_parsing_zoom", 0.6), ("ch5_cardinalities", (1, 2, 4)), ("ch5_workers", 2),
               ("ch5_threads", 1), ("ch5_packed_batch", 16), ("ch5_packed_repeats", 5)),
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
               ("ch4_depth_input_size", 256), ("ch4_lr_2d_to_3d", 1e-3),
               # chapter 5: the thesis's networks and schedule (5.5.1: 55 epochs, RMSprop 2.5e-4
               # dropped four times to 5e-5, batch 10); one run at a time on the GPU. Packed inference
               # runs on the CPU, where the thesis's float network takes ~0.67 s per image (5.4): its
               # outputs are compared on 300 test faces and timed on batches of 4, 3 rounds.
               ("ch5_epochs", 55), ("ch5_workers", 1), ("ch5_packed_images", 300), ("ch5_packed_batch", 4),
               ("ch5_packed_repeats", 3)),
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
