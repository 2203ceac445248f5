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
    if ctx.data_root is None:
        data = (f"{len(ctx.train_pairs)} training pairs ({ctx.train_pairs.name}, yaw uniform in [-90, 90]) and "
                f"{len(ctx.test_pairs)} yaw-balanced test pairs of other people")
    else:
        data = (f"{len(ctx.train_pairs)} training pairs from real faces ({ctx.train_pairs.name}) and "
                f"{len(ctx.test_pairs)} test pairs ({ctx.test_pairs.name}; |yaw| bins from the pose fitted to "
                f"the landmarks where the files carry none)")
        if ctx.annotated_pairs is not ctx.train_pairs:
            data += (f"; the FANs and feature stand-ins train on the {len(ctx.annotated_pairs)} of them with 68 "
                     "landmarks, the other faces (framed by the 68-point box their AFLW or CelebA points imply) "
                     "train the super-resolution networks only, whose heatmap loss needs no landmarks (eq. 6.4)")
    return (f"Profile **{ctx.name}**: {data}; 16 -> 64 px. "
            f"Generators {s.generator_width} channels wide (12-3-2: {tuple(s.generator_blocks)}; SR-ResNet "
            f"{s.sr_resnet_blocks}-1-1), output {s.generator_output}; critic width {s.critic_width}; FANs with "
            f"{s.fan_stacks} stacks of width {s.fan_width} (hourglass depth {s.fan_hg_depth}) on the 64 px faces. "
            f"Steps: FANs {b['fan']['steps']}, feature stand-ins {b['standin']['steps']}, each super-resolution "
            f"model {b['sr']['steps']} ({s.optimizer}, lr {s.lr:g}, x{s.lr_gamma:g} at "
            f"{', '.join(f'{m:.0%}' for m in s.lr_milestones)}), + GAN {b['gan']['steps']}, end to end "
            f"{b['joint']['steps']}, degraded fine-tuning {b['degraded']['steps']} (lr {s.finetune_lr:g}); eq. 6.5's "
            f"zeta {s.adversarial_weight:g}; batch "
            f"{s.batch_size}; seed {ctx.seed}; device {ctx.device}. Data ready in {ctx.data_seconds:.0f} s.")


def describe_sparse_framing(ctx: Chapter6, table: pd.DataFrame) -> str:
    """Markdown: what :func:`fa_lib.experiments.ch6.data.sparse_framing_check` measured on the test faces."""
    parts = []
    for markup, rows in table.groupby("markup", sort=False):
        parts.append(f"{markup}: longer side {rows['side ratio p10'].min():.2f}-{rows['side ratio p90'].max():.2f} "
                     f"times the true one (10th-90th percentiles over the |yaw| bins), centre off by a median of "
                     f"{rows['centre offset median (of side)'].max():.1%} of the side at most, "
                     f"{int(rows['framed'].sum())} of {int(rows['faces'].sum())} faces framed")
    where = ("the synthetic test faces, made from the same face model as the mean landmarks the fit uses "
             "(an optimistic check)" if ctx.data_root is None else f"the real test faces ({ctx.test_pairs.name})")
    return (f"Measured on {where}, whose 68 landmarks are known: " + "; ".join(parts) + ". This is how the AFLW "
            "and CelebA faces of a data root are framed; a face with fewer points is framed by its dataset's "
            "box instead.")


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


def describe_table_6_2(ctx: Chapter6) -> str:
    """Markdown: what the landmark table says about each loss here, from the measured AUCs."""
    auc = {row: float(ctx.auc_scores(row).mean()) for row in ctx.row_inputs()}
    parts = [f"Over all test faces: FAN-HR {auc['FAN-HR images']:.1f}, Super-FAN {auc['Super-FAN']:.1f}, the retrained "
             f"FAN-bilinear {auc['Retrained FAN-bilinear']:.1f}, SR-ResNet {auc['FAN-SR-ResNet']:.1f}, Ours-pixel "
             f"{auc['FAN-Ours-pixel']:.1f}, Ours-pixel-feature {auc['FAN-Ours-pixel-feature']:.1f}, + heatmap (no GAN) "
             f"{auc['FAN-Ours-pixel-feature-heatmap (no GAN)']:.1f}, FAN-bilinear {auc['FAN-bilinear']:.1f}."]
    if auc["FAN-Ours-pixel-feature"] < auc["FAN-Ours-pixel"]:
        parts.append("The feature loss hurts the landmarks here, where the thesis's helped: its network is a stand-in "
                     "trained to regress landmarks, not ImageNet's ResNet-50, and the faces it shapes carry a regular "
                     "grid at the network's stride (visible in Fig. 6.4), which the FAN trained on clean faces "
                     "misreads. The heatmap loss undoes most of it.")
    if auc["Super-FAN"] > auc["FAN-Ours-pixel-feature-heatmap"]:
        parts.append(f"Training the FAN together with the generator adds "
                     f"{auc['Super-FAN'] - auc['FAN-Ours-pixel-feature-heatmap']:.1f} AUC points to the same "
                     "super-resolution with the FAN frozen, the thesis's argument for Super-FAN.")
    return " ".join(parts)
