"""The text of the chapter-3 notebook that depends on the numbers: written from the context, the
measurements and the verdicts, never by hand."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from fa_lib.experiments.ch3.context import CaleRun, Chapter3
from fa_lib.experiments.verdict import describe_verdicts  # noqa: F401  (the notebook's summary)
from fa_lib.models.cale import cale
from fa_lib.models.fan import parameter_count


def describe_setup(ctx: Chapter3) -> str:
    """Markdown: the data, the networks' scale and the training budget of the profile."""
    s = ctx.setup
    d = ctx.data.describe()
    budget = (f"{' / '.join(str(b) for b in s.stage_iterations)} optimiser steps" if s.stage_iterations is not None
              else f"{' / '.join(str(b) for b in s.stage_epochs)} epochs")
    return (f"Profile **{ctx.name}**: training faces {d['train']}, test faces {d['test']}"
            f"{' (real AFLW-PIFA)' if d['real'] else ''}; crops {s.input_size} px (zoom {s.zoom} of FAN's crop), "
            f"{s.n_points} points; VGG-16 widths divided by {s.width_divisor}, fc6/fc7 {s.fc_channels} wide "
            f"(fc6 {s.fc6_kernel}x{s.fc6_kernel}), regressor kernels {tuple(s.regressor_kernels)}"
            f"{', batch normalisation' if s.batch_norm else ''}; {s.optimizer} at lr {s.lr:g} (joint stage "
            f"x{s.joint_lr_factor:g}), batch {s.batch_size}; stages (stride 32 / stride 8 / regressor / joint): "
            f"{budget}; seeds {list(ctx.seeds)}; device {ctx.device}. Data ready in {ctx.data_seconds:.0f} s.")


def network_table(ctx: Chapter3) -> pd.DataFrame:
    """Parameters of the detector and the regressor at this scale and at the thesis's."""
    here = cale(**ctx.model_kwargs())
    thesis = cale(n_points=ctx.n_points, image_channels=ctx.image_channels)
    rows = []
    for part in ("detector", "regressor"):
        rows.append({"subnetwork": part, "parameters here (M)": parameter_count(getattr(here, part)) / 1e6,
                     "at the thesis's scale (M)": parameter_count(getattr(thesis, part)) / 1e6})
    return pd.DataFrame(rows).round(3)


def describe_training(ctx: Chapter3, runs: Sequence[CaleRun], seconds: float) -> str:
    """Markdown: how each seed's CALE was obtained and what it cost."""
    parts = []
    for r in runs:
        how = "loaded from the run cache" if r.cached else f"trained in {r.train_seconds:.0f} s"
        parts.append(f"seed {r.seed}: detector {r.detector_steps} steps, CALE {r.cale_steps} more ({how}); "
                     f"NME on the 34 visible points: detector {ctx.nme(r, 'detector', 34, True):.2f}%, "
                     f"CALE {ctx.nme(r, 'cale', 34, True):.2f}%")
    return "; ".join(parts) + f". This cell took {seconds:.0f} s."


def describe_evidence(cases: pd.DataFrame) -> str:
    """Markdown: what the explorer's cases show about hidden and visible points."""
    if cases.empty:
        return ""
    hidden, shown = cases[~cases["visible"]], cases[cases["visible"]]
    parts = []
    if len(hidden):
        parts.append(f"On the {len(hidden)} hidden points shown the detector's confidence averages "
                     f"{hidden['detector confidence'].mean():.2f} and the final point lies "
                     f"{hidden['error (crop px)'].median():.1f} crop px from the label (median)")
    if len(shown):
        parts.append(f"on the {len(shown)} visible ones the confidence averages {shown['detector confidence'].mean():.2f}"
                     f" and the error is {shown['error (crop px)'].median():.1f} px")
    return "; ".join(parts) + "."
