"""The text of the chapter-6 notebook that depends on the numbers: written from the context, the
measurements and the verdicts, never by hand."""
from __future__ import annotations

import pandas as pd

from fa_lib.experiments.ch6.context import Chapter6
from fa_lib.experiments.verdict import describe_verdicts  # noqa: F401  (the notebook's summary)


def describe_setup(ctx: Chapter6) -> str:
    """Markdown: the data, the networks' scale and the training budgets of the profile."""
    s = ctx.setup
    b = {k: ctx.budget(k) for k in ("fan", "standin", "sr", "gan", "joint", "degraded")}
    return (f"Profile **{ctx.name}**: {len(ctx.train_pairs)} training pairs ({ctx.train_pairs.name}, yaw uniform in "
            f"[-90, 90]) and {len(ctx.test_pairs)} yaw-balanced test pairs of other people; 16 -> 64 px. "
            f"Generators {s.generator_width} channels wide (12-3-2: {tuple(s.generator_blocks)}; SR-ResNet "
            f"{s.sr_resnet_blocks}-1-1), output {s.generator_output}; critic width {s.critic_width}; FANs with "
            f"{s.fan_stacks} stacks of width {s.fan_width} (hourglass depth {s.fan_hg_depth}) on the 64 px faces. "
            f"Steps: FANs {b['fan']['steps']}, feature stand-ins {b['standin']['steps']}, each super-resolution "
            f"model {b['sr']['steps']} ({s.optimizer}, lr {s.lr:g}, x{s.lr_gamma:g} at "
            f"{', '.join(f'{m:.0%}' for m in s.lr_milestones)}), + GAN {b['gan']['steps']}, end to end "
            f"{b['joint']['steps']}, degraded fine-tuning {b['degraded']['steps']} (lr {s.finetune_lr:g}); eq. 6.5's "
            f"zeta {s.adversarial_weight:g}; batch "
            f"{s.batch_size}; seed {ctx.seed}; device {ctx.device}. Data ready in {ctx.data_seconds:.0f} s.")


def network_table(ctx: Chapter6) -> pd.DataFrame:
    """Parameters of each network at this scale."""
    return pd.DataFrame([{"network": k, "parameters (M)": round(v / 1e6, 3)} for k, v in ctx.parameter_counts().items()])


def describe_training(ctx: Chapter6, seconds: float) -> str:
    """Markdown: how long the chapter's networks took (or that they came from the run cache)."""
    runs = ctx.trained_runs()
    fresh = [r for r in runs.values() if not r.cached]
    total = sum(r.train_seconds for r in runs.values())
    sources = "; ".join(f"{k}: {getattr(r.modules, 'source', '')}" for k, r in runs.items() if k.startswith("features"))
    how = ("all loaded from the run cache" if not fresh else
           f"{len(fresh)} trained now, {len(runs) - len(fresh)} from the run cache")
    return (f"{len(runs)} networks ({how}); their training took {total:.0f} s in all (two at a time on a CPU), this "
            f"cell {seconds:.0f} s. Feature networks: {sources}.")


def describe_sweep(sweep: pd.DataFrame) -> str:
    """Markdown: from which face size bilinear upsampling + FAN beats Super-FAN (the API's threshold)."""
    wide = sweep.pivot(index="face size (px)", columns="method", values="NME (%)")
    if "Super-FAN" not in wide or "bilinear + FAN" not in wide:
        return ""
    better = wide.index[wide["bilinear + FAN"] < wide["Super-FAN"]]
    rows = ", ".join(f"{size} px: {wide.loc[size, 'Super-FAN']:.1f}% vs {wide.loc[size, 'bilinear + FAN']:.1f}%"
                     for size in wide.index)
    if len(better) == 0:
        return f"Super-FAN's NME is lower than bilinear + FAN's at every size here ({rows})."
    return (f"Super-FAN's NME vs bilinear + FAN's by face size: {rows}. From {int(better.min())} px up, the FAN on "
            "the bilinearly upsampled face does better: the generator only ever sees 16 px, so a larger face loses "
            "detail on the way in. `FaceAligner(super_resolution=...)` therefore sends only faces smaller than its "
            "threshold through Super-FAN.")
