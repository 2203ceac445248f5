"""The chapter's scale: a resolved view of the profile's ``ch4`` and ``data`` sections, and the
constants of the thesis that the experiments use.

:class:`Ch4Setup` is what every function of the chapter reads (``ch4_setup("quick")``): the knobs of
:class:`fa_lib.profiles.Ch4Scale` with their "None: as ..." defaults resolved (the depth network's
budget, Table 4.4's rows at this width), plus the data sizes. The profile itself is the only place
that sets a value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from fa_lib.profiles import Profile, TrainConfig, get_profile

#: Table 4.3's test noise levels (fractions of the box side)
NOISE_LEVELS = (0.0, 0.1, 0.2, 0.3)
#: box noise of every other evaluation (section 4.7: "we used 10% of noise")
EVAL_BOX_NOISE = 0.1
#: Table 4.4's rows: label, stacks, width at the thesis's scale (256 channels; the 4M/2M rows are
#: 1-stack FANs with narrower blocks, widths as in fa_lib.models.sizes)
THESIS_SIZE_ROWS = (("24M", 4, 256), ("18M", 3, 256), ("12M", 2, 256), ("6M", 1, 256),
                    ("4M", 1, 200), ("2M", 1, 136))
THESIS_WIDTH = 256
#: the four networks of section 4.3, as the context names them
MODEL_NAMES = ("2D-FAN", "3D-FAN", "2D-to-3D-FAN", "3D-FAN-full depth")
#: the thesis's speed claims (section 4.7), frames/s on a Titan X GPU
THESIS_FPS = {"largest (24M, 4 stacks)": (28.0, 30.0), "smallest (2M)": (150.0, 150.0)}
#: offsets the noisy-box seed of evaluations from training seeds
EVAL_SEED = 4_000_017


@dataclass(frozen=True)
class Ch4Setup:
    """Every scale knob chapter 4 uses, resolved from a profile (see :class:`fa_lib.profiles.Ch4Scale`
    for what each one means). ``size_rows``: Table 4.4's variants (label, stacks, width) at this
    scale; ``depth_iterations``: the depth network's budget (the FANs' when the profile leaves it
    unset); ``train_size``/``test_size``/``image_size``: the synthetic data (``profile.data``)."""

    profile: Profile
    input_size: int
    heatmap_size: int
    stacks: int
    width: int
    hg_depth: int
    pooling: str
    stem_channels: tuple[int, int]
    batch_size: int
    lr: float
    lr_2d_to_3d: float
    iterations: int | None
    epochs: int | None
    lr_milestones: tuple[float, ...]
    lr_gamma: float
    val_fraction: float
    depth_layers: tuple[int, int, int, int]
    depth_input_size: int
    depth_iterations: int | None
    size_rows: tuple[tuple[str, int, int], ...]
    resolutions: tuple[int, ...]
    train_size: int
    test_size: int
    image_size: int
    speed_thesis_scale: bool
    loader_workers: int = 0
    sigma: float = 1.0
    size_iterations: int | None = None   # Table 4.4's budget per variant (None: the 3D-FAN budget)
    convert_images: int | None = None    # test faces given to convert-ls3dw for Fig. 4.6 (None: all)
    decoder: str = "quarter"             # heatmaps -> points in every evaluation (fa_lib.heatmaps.DECODERS)
    iterations_2d_to_3d: int | None = None  # 2D-to-3D-FAN's budget (None: ``iterations``)
    cpu_bf16: bool = False               # bfloat16 autocast when training on a CPU
    channels_last: bool = False          # channels-last memory when training

    @property
    def name(self) -> str:
        return self.profile.name

    def fan_kwargs(self, stacks: int | None = None, width: int | None = None) -> dict[str, Any]:
        """Keyword arguments of :class:`fa_lib.models.FAN` at this scale (hierarchical block)."""
        return dict(num_modules=int(stacks or self.stacks), width=int(width or self.width),
                    hg_depth=self.hg_depth, pooling=self.pooling, stem_channels=self.stem_channels)

    def train_config(self, lr: float | None = None, iterations: int | None = None) -> TrainConfig:
        """The optimisation budget of one network (RMSprop, section 4.3.2) as the shared
        :class:`~fa_lib.profiles.TrainConfig` (provenance; the trainer's keywords)."""
        its = self.iterations if iterations is None else iterations
        return TrainConfig(optimizer="rmsprop", lr=float(self.lr if lr is None else lr), batch_size=self.batch_size,
                           iterations=its, epochs=None if its else self.epochs,
                           lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma, cpu_bf16=self.cpu_bf16,
                           channels_last=self.channels_last, val_decoder=self.decoder)

    def speed_record(self) -> dict[str, bool]:
        """The training-speed switches that are on (part of a run's cache key; the rule of
        :meth:`fa_lib.profiles.TrainConfig.speed_record`)."""
        return self.train_config().speed_record()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = self.profile.name
        return d


def scaled_width(width: int, thesis_width: int) -> int:
    """A narrower block at this scale: the thesis's ratio, rounded to a multiple of 4 (the
    hierarchical block splits its channels in 1/2, 1/4, 1/4)."""
    if thesis_width == THESIS_WIDTH:
        return int(width)
    return max(4, int(round(width * thesis_width / THESIS_WIDTH / 4)) * 4)


def ch4_setup(profile: str | Profile = "quick") -> Ch4Setup:
    """The chapter-4 scale of ``profile`` (its ``ch4`` and ``data`` sections)."""
    prof = get_profile(profile)
    s, data = prof.ch4, prof.data
    size_rows = tuple((label, stacks, scaled_width(s.width, w)) for label, stacks, w in THESIS_SIZE_ROWS
                      if s.size_rows is None or label in s.size_rows)
    return Ch4Setup(
        profile=prof, input_size=s.input_size, heatmap_size=s.heatmap_size, stacks=s.stacks, width=s.width,
        hg_depth=s.hg_depth, pooling=s.pooling, stem_channels=tuple(s.stem_channels), batch_size=s.batch_size,
        lr=float(s.lr), lr_2d_to_3d=float(s.lr_2d_to_3d), iterations=s.iterations,
        epochs=None if s.iterations is not None else s.epochs, lr_milestones=tuple(s.lr_milestones),
        lr_gamma=float(s.lr_gamma), val_fraction=float(s.val_fraction), sigma=float(s.sigma),
        depth_layers=tuple(s.depth_layers), depth_input_size=s.depth_input_size,
        depth_iterations=s.iterations if s.depth_iterations is None else s.depth_iterations,
        size_rows=size_rows, resolutions=tuple(s.resolutions), train_size=data.train_size,
        test_size=data.test_size, image_size=data.image_size, speed_thesis_scale=bool(s.speed_thesis_scale),
        loader_workers=s.loader_workers, size_iterations=s.size_iterations, convert_images=s.convert_images,
        decoder=s.decoder, cpu_bf16=s.cpu_bf16, channels_last=s.channels_last,
        iterations_2d_to_3d=s.iterations if s.iterations_2d_to_3d is None else s.iterations_2d_to_3d)


def size_budget_setup(setup: Ch4Setup) -> Ch4Setup:
    """The setup Table 4.4's variants are trained with: the 3D-FAN budget, or
    ``setup.size_iterations`` steps when the profile sets a different one (then every row, the
    chapter's own layout included, is trained with it, so the table compares like with like)."""
    if setup.size_iterations is not None and setup.size_iterations != setup.iterations:
        return replace(setup, iterations=int(setup.size_iterations), epochs=None)
    return setup
