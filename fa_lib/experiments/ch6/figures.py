"""The figures of chapter 6: Fig. 6.4 (the methods side by side), Fig. 6.6 (Super-FAN's landmarks on
the 16 px inputs), the real tiny faces (Figs. 6.1, 6.5 and 6.7 on WiderFace's tiny faces with a data root,
else their analogue on scikit-image's LFW crops), Fig. 6.9 (face sizes), and the resolution explorer's frames and sweep (what each method does as
the face shrinks from 64 to 8 px)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from fa_lib.data import formats
from fa_lib.data.real import RealFaceDataset
from fa_lib.data.lowres import HIGH_RES, LOW_RES, downsample_bilinear
from fa_lib.experiments.ch6.context import Chapter6
from fa_lib.experiments.ch6.data import FACE_FRACTION, crop_square
from fa_lib.experiments.common import evenly_spaced
from fa_lib.experiments.ch6.tables import EVERY_NETWORK
from fa_lib.experiments.registry import ThesisResult, thesis_figure

#: Fig. 6.4's columns: title -> method ("bilinear" and "hr" are the input and the target)
FIG_6_4_COLUMNS = {"bilinear": "bilinear", "SR-GAN": "sr-gan", "Ours-pixel": "pixel",
                   "Ours-pixel-feature": "pixel-feature", "Ours-pixel-feature-heatmap": "pixel-feature-heatmap",
                   "Super-FAN": "super-fan", "HR": "hr"}
PREDICTED, TRUTH = "#ff3030", "#30ff30"


def _write(ctx: Chapter6, fig: Figure, fig_id: str, caption: str, **extra: Any) -> Path:
    budget = {k: ctx.budget(k) for k in ("fan", "standin", "sr", "gan", "joint", "degraded")}
    return ctx.write_figure(fig, fig_id, dataset=f"{ctx.train_pairs.name} -> {ctx.test_pairs.name}", caption=caption,
                            budget=budget, extra=extra)


def example_faces(ctx: Chapter6, count: int) -> list[int]:
    """Test faces for the figures: taken in turn from the three |yaw| bins (frontal, 30-60, profile)."""
    bins = ctx.bins
    per_bin = [np.flatnonzero(bins == b) for b in range(3)]
    out = []
    for k in range(count):
        candidates = per_bin[k % 3]
        if len(candidates):
            out.append(int(candidates[(k // 3) % len(candidates)]))
    return out


def _image(tensor: torch.Tensor) -> np.ndarray:
    return tensor.clamp(0, 1).permute(1, 2, 0).numpy()


@thesis_figure("6.4", trains=(EVERY_NETWORK,))
def fig_6_4(ctx: Chapter6) -> ThesisResult:
    """Fig. 6.4: the 64 px faces of each method side by side (rows: test faces from the three |yaw| bins;
    columns: bilinear upsampling, SR-GAN, Ours-pixel, -pixel-feature, -pixel-feature-heatmap, Super-FAN,
    the HR face)."""
    ctx.train_all()
    faces = example_faces(ctx, ctx.setup.fig_faces)
    fig = Figure(figsize=(1.5 * len(FIG_6_4_COLUMNS), 1.6 * len(faces)))
    for r, i in enumerate(faces):
        for c, (title, method) in enumerate(FIG_6_4_COLUMNS.items()):
            ax = fig.add_subplot(len(faces), len(FIG_6_4_COLUMNS), r * len(FIG_6_4_COLUMNS) + c + 1)
            ax.imshow(_image(ctx.super_resolved(method)[i]))
            if r == 0:
                ax.set_title(title, fontsize=7)
            ax.set_axis_off()
    fig.tight_layout()
    path = _write(ctx, fig, "6_4", "16 -> 64 px super-resolution by each method (thesis Fig. 6.4; synthetic test "
                                   "faces, one row per |yaw| bin in turn)")
    return ThesisResult("6.4", "figure", figure=fig, path=path, data={"faces": faces})


@thesis_figure("6.6", trains=(EVERY_NETWORK,))
def fig_6_6(ctx: Chapter6) -> ThesisResult:
    """Fig. 6.6: Super-FAN's landmarks drawn on the 16 px input (shown enlarged, nearest-neighbour), with
    the ground truth, for faces of every |yaw| bin."""
    ctx.train_all()
    faces = example_faces(ctx, 2 * ctx.setup.fig_faces)
    data = ctx.test_tensors()
    points = ctx.landmarks(ctx.method("super-fan").modules["fan"], ctx.super_resolved("super-fan")[faces])
    errors = ctx.nme(points, faces)
    cols = min(6, len(faces))
    rows = int(np.ceil(len(faces) / cols))
    fig = Figure(figsize=(2.0 * cols, 2.1 * rows))
    scale = LOW_RES / HIGH_RES
    for k, i in enumerate(faces):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(_image(data["image_lr"][i]), interpolation="nearest", extent=(0, LOW_RES, LOW_RES, 0))
        gt = data["landmarks_image"][i].numpy() * scale
        ax.scatter(gt[:, 0], gt[:, 1], s=3, c=TRUTH, linewidths=0)
        ax.scatter(points[k][:, 0] * scale, points[k][:, 1] * scale, s=3, c=PREDICTED, linewidths=0)
        ax.set_title(f"face {i}: NME {100 * errors[k]:.1f}%", fontsize=7)
        ax.set_axis_off()
    fig.tight_layout()
    path = _write(ctx, fig, "6_6", "Super-FAN's landmarks (red) and the ground truth (green) on the 16 px inputs "
                                   "(thesis Fig. 6.6; synthetic test faces)")
    return ThesisResult("6.6", "figure", figure=fig, path=path, data={"faces": faces, "nme": errors})


# --------------------------------------------------------------------------------------------------
# real tiny faces (the analogue of Figs. 6.1, 6.5 and 6.7)


def real_tiny_faces(count: int = 12) -> tuple[np.ndarray | None, str]:
    """Real low-resolution faces that can be had offline: scikit-image's ``lfw_subset`` (grey 25 x 25
    crops of Labeled Faces in the Wild, bundled with scikit-image; never copied into this project),
    resized to the generator's 16 px input and repeated to three channels. (None, why) when
    unavailable."""
    try:
        from skimage import data as skdata

        crops = skdata.lfw_subset()
    except Exception as error:  # scikit-image without its data files
        return None, f"scikit-image's lfw_subset is not available ({error})"
    faces = crops[:100][:: max(1, 100 // count)][:count]
    out = []
    for face in faces:
        grey = np.clip(np.asarray(face) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out.append(np.repeat(downsample_bilinear(grey, LOW_RES)[..., None], 3, axis=2))
    return np.stack(out), "scikit-image lfw_subset (LFW, grey 25 px crops)"


#: the WiderFace faces Figs. 6.1, 6.5 and 6.7 are drawn from: max(w, h) of the box in px (the thesis's
#: "very low resolution" faces, Fig. 6.9; below the lower end a box holds too little of a face to frame)
WIDERFACE_TINY_SIZES = (10.0, 30.0)


def widerface_tiny_faces(data_root, count: int = 12, sizes: tuple[float, float] = WIDERFACE_TINY_SIZES
                         ) -> tuple[np.ndarray | None, str]:
    """``count`` real tiny faces of WiderFace's validation set (valid boxes with max(w, h) in ``sizes``,
    evenly spaced over the set) as the generator's 16 px input: each box taken as the 68-point box and
    framed as the training faces are (:data:`fa_lib.experiments.ch6.data.FACE_FRACTION` of the side),
    area-resampled to 16 px. (None, why) when the data root has no WiderFace or no face of those sizes."""
    try:
        faces = RealFaceDataset("widerface", data_root, "val", max_face_size=sizes[1])
    except FileNotFoundError as error:
        return None, f"no WiderFace validation set ({error})"
    chosen = [i for i, record in enumerate(faces.records)
              if max(record["box"][2] - record["box"][0], record["box"][3] - record["box"][1]) >= sizes[0]]
    if not chosen:
        return None, f"no WiderFace validation face of {sizes[0]:.0f}-{sizes[1]:.0f} px under {data_root}"
    out = []
    for k in evenly_spaced(len(chosen), count):
        sample = faces[chosen[int(k)]]
        box = np.asarray(sample["box"], np.float64)
        out.append(crop_square(sample["image"], (box[:2] + box[2:]) / 2, max(box[2] - box[0], box[3] - box[1]) /
                               FACE_FRACTION, LOW_RES))
    return (np.stack(out), f"WiderFace validation, {len(out)} of its {len(chosen)} valid faces of "
                           f"{sizes[0]:.0f}-{sizes[1]:.0f} px under {faces.root}")


@thesis_figure("6.real", trains=(EVERY_NETWORK,))
def fig_6_real(ctx: Chapter6) -> ThesisResult:
    """Figs. 6.1, 6.5 and 6.7 on real tiny faces: SR-GAN and Super-FAN, both fine-tuned on degraded
    inputs (blur, JPEG, colour; section 6.3.3), on real 16 px faces, with Super-FAN's landmarks: WiderFace's
    tiny faces as in the thesis when the data root has it (:func:`widerface_tiny_faces`), else grey crops
    of LFW (:func:`real_tiny_faces`). No ground truth: a qualitative figure."""
    ctx.train_all()
    faces, source = (None, "no data_root") if ctx.data_root is None else \
        widerface_tiny_faces(ctx.data_root, 2 * ctx.setup.fig_faces)
    widerface = faces is not None
    if not widerface:
        faces, source = real_tiny_faces(2 * ctx.setup.fig_faces)
    if faces is None:
        return ThesisResult("6.real", "figure", notes=[f"not reproduced: {source}"])
    low = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    sr_gan = ctx._batched(lambda x: ctx.method("sr-gan-degraded").modules["generator"](x).clamp(0, 1), low)
    sf = ctx.method("super-fan-degraded").modules
    ours = ctx._batched(lambda x: sf["generator"](x).clamp(0, 1), low)
    points = ctx.landmarks(sf["fan"], ours)
    n = len(faces)
    fig = Figure(figsize=(1.4 * n, 5.0))
    for k in range(n):
        for r, (title, image) in enumerate((("input 16 px", low[k]), ("SR-GAN", sr_gan[k]),
                                            ("Super-FAN", ours[k]))):
            ax = fig.add_subplot(3, n, r * n + k + 1)
            ax.imshow(_image(image), interpolation="nearest" if r == 0 else "antialiased")
            if r == 2:
                ax.scatter(points[k][:, 0] - 0.5, points[k][:, 1] - 0.5, s=2, c=PREDICTED, linewidths=0)
            if k == 0:
                ax.set_title(title, fontsize=7, loc="left")
            ax.set_axis_off()
    fig.tight_layout()
    path = _write(ctx, fig, "6_real", f"Real tiny faces ({source}): the 16 px input, SR-GAN and Super-FAN with its "
                                      "landmarks, both fine-tuned on degraded synthetic inputs (thesis Figs. 6.1, "
                                      "6.5, 6.7 analogue)", real_faces=source)
    note = ("WiderFace's tiny faces, framed from their boxes (a box is not the 68-point box: the framing is "
            "approximate): a qualitative look, with no ground truth to score." if widerface else
            "Real faces, but grey and cropped tighter than the synthetic training faces: "
            "a qualitative look, with no ground truth to score.")
    return ThesisResult("6.real", "figure", figure=fig, path=path, data={"source": source, "widerface": widerface},
                        notes=[note])


# --------------------------------------------------------------------------------------------------
# Fig. 6.9: face sizes


WIDERFACE_BOXES = Path("wider_face_split") / "wider_face_val_bbx_gt.txt"


def widerface_sizes(data_root: Path | None, max_size: float = 64.0) -> tuple[np.ndarray | None, str]:
    """max(w, h) of WiderFace's valid validation faces up to ``max_size`` px, or (None, why not)."""
    if data_root is None:
        return None, "no data_root"
    for root in (Path(data_root) / "widerface", Path(data_root)):
        if (root / WIDERFACE_BOXES).is_file():
            sizes = [max(b[2] - b[0], b[3] - b[1]) for image in formats.read_wider_face_boxes(root / WIDERFACE_BOXES)
                     for b, invalid in zip(image.boxes, image.attributes["invalid"]) if not invalid]
            sizes = np.asarray([s for s in sizes if 0 < s <= max_size], np.float64)
            return sizes, f"WiderFace validation boxes under {root} ({len(sizes)} faces up to {max_size:.0f} px)"
    return None, f"no {WIDERFACE_BOXES} under {data_root}"


@thesis_figure("6.9")
def fig_6_9(ctx: Chapter6) -> ThesisResult:
    """Fig. 6.9: the distribution of face sizes, max(w, h) in px: WiderFace's validation faces when
    ``data_root`` holds WiderFace, else the synthetic test inputs' boxes in the 16 px images (labelled)."""
    sizes, source = widerface_sizes(ctx.data_root)
    real = sizes is not None
    if not real:
        box = ctx.test_tensors()["box"].numpy() * (LOW_RES / HIGH_RES)
        sizes = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
        source = (f"synthetic test inputs: the 68-point box in the 16 px images ({len(sizes)} faces; {source}: the "
                  "thesis's ~200 WiderFace faces cannot be had here)")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(sizes, bins=30, color="#4c72b0")
    ax.set_xlabel("face size max(w, h) (px)")
    ax.set_ylabel("faces")
    ax.set_title("WiderFace" if real else "synthetic 16 px inputs (stand-in)", fontsize=9)
    fig.tight_layout()
    path = _write(ctx, fig, "6_9", f"Face sizes (thesis Fig. 6.9): {source}", sizes_source=source)
    return ThesisResult("6.9", "figure", figure=fig, path=path,
                        data={"source": source, "median": float(np.median(sizes)), "real": real})


# --------------------------------------------------------------------------------------------------
# the resolution explorer


def at_size(images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 64 px faces shrunk to ``size`` px (antialiased bilinear), and that face resized to the
    generator's 16 px input (bilinear: up when ``size`` < 16, down when larger)."""
    small, sixteen = [], []
    for image in images:
        hr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        s = downsample_bilinear(hr, size)
        small.append(torch.from_numpy(s.copy()).permute(2, 0, 1).float() / 255.0)
        sixteen.append(torch.from_numpy(downsample_bilinear(s, LOW_RES).copy()).permute(2, 0, 1).float() / 255.0)
    return torch.stack(small), torch.stack(sixteen)


#: the explorer's methods: label -> (generator's method or None for bilinear, FAN: "hr" teacher or "own")
EXPLORER_METHODS = {"bilinear + FAN": (None, "hr"),
                    "generator + FAN (Ours-pixel-feature-heatmap-GAN)": ("pixel-feature-heatmap-gan", "hr"),
                    "Super-FAN": ("super-fan", "own")}


def _at_size_outputs(ctx: Chapter6, size: int, faces: Sequence[int] | None = None
                     ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, np.ndarray]]]:
    """The faces at ``size`` px and, per explorer method, its 64 px face and landmarks."""
    hr = ctx.test_tensors()["image_hr"]
    hr = hr if faces is None else hr[list(faces)]
    small, sixteen = at_size(hr, size)
    out = {}
    for label, (method, fan_kind) in EXPLORER_METHODS.items():
        if method is None:
            image = torch.nn.functional.interpolate(small, size=HIGH_RES, mode="bilinear", align_corners=False)
            image = image.clamp(0, 1)
        else:
            generator = ctx.method(method).modules["generator"]
            image = ctx._batched(lambda x: generator(x).clamp(0, 1), sixteen)
        fan = ctx.method(method).modules["fan"] if fan_kind == "own" else ctx.fan("hr")
        out[label] = (image, ctx.landmarks(fan, image))
    return small, out


def resolution_sweep(ctx: Chapter6) -> pd.DataFrame:
    """NME (%) and AUC@10% of each explorer method on every test face shrunk to each of the profile's
    ``explorer_sizes`` (the generator always gets the face resized to its 16 px input)."""
    ctx.train_all()
    rows = []
    t = ctx.setup.auc_threshold
    for size in ctx.setup.explorer_sizes:
        _, outputs = _at_size_outputs(ctx, size)
        for label, (_, points) in outputs.items():
            e = ctx.nme(points)
            rows.append({"face size (px)": size, "method": label, "NME (%)": 100 * float(e.mean()),
                         f"AUC@{100 * t:.0f}%": 100 * float(np.clip(1 - e / t, 0, 1).mean())})
    return pd.DataFrame(rows)


def resolution_frames(ctx: Chapter6, faces: int = 3) -> tuple[list[list[Figure]], list[str], list[str]]:
    """The resolution explorer (``fa_lib.widgets.grid_explorer``): for test faces of each |yaw| bin
    (rows) and each face size (columns), the input at that size, bilinear upsampling, the generator
    and Super-FAN, each with its landmarks and NME. Returns (frames[face][size], face labels, size
    labels)."""
    ctx.train_all()
    chosen = example_faces(ctx, faces)
    truth = ctx.test_tensors()["landmarks_image"]
    frames = []
    for i in chosen:
        row = []
        for size in ctx.setup.explorer_sizes:
            small, outputs = _at_size_outputs(ctx, size, [i])
            errors = {label: float(ctx.nme(points, [i])[0]) for label, (_, points) in outputs.items()}
            fig = Figure(figsize=(7.6, 2.3))
            ax = fig.add_subplot(1, 4, 1)
            ax.imshow(_image(small[0]), interpolation="nearest")
            ax.set_title(f"input: {size} x {size} px", fontsize=7)
            ax.set_axis_off()
            for k, (label, (image, points)) in enumerate(outputs.items()):
                ax = fig.add_subplot(1, 4, k + 2)
                ax.imshow(_image(image[0]))
                gt = truth[i].numpy()
                ax.scatter(gt[:, 0] - 0.5, gt[:, 1] - 0.5, s=2, c=TRUTH, linewidths=0)
                ax.scatter(points[0][:, 0] - 0.5, points[0][:, 1] - 0.5, s=2, c=PREDICTED, linewidths=0)
                ax.set_title(f"{label.split(' (')[0]}\nNME {100 * errors[label]:.1f}%", fontsize=7)
                ax.set_axis_off()
            fig.tight_layout()
            row.append(fig)
        frames.append(row)
    yaw = np.abs(ctx.test_tensors()["pose"][:, 0].numpy())
    return frames, [f"face {i} (|yaw| {yaw[i]:.0f} deg)" for i in chosen], [f"{s} px" for s in ctx.setup.explorer_sizes]


@thesis_figure("6.learning_curves", trains=(EVERY_NETWORK,))
def fig_6_learning_curves(ctx: Chapter6) -> ThesisResult:
    """The training history of every network of the chapter (the scale section's evidence that they
    learn): the FANs' and stand-ins' training loss, each super-resolution model's pixel term (eq. 6.1,
    as weighted in its loss) and the critic's Wasserstein estimate in the GAN stages, per epoch."""
    runs = ctx.trained_runs()
    fig = Figure(figsize=(13, 3.6))
    panels = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    for name, run in runs.items():
        steps = [h.get("step") for h in run.history]
        if name.startswith(("fan-", "features-")):
            panels[0].plot(steps, [h.get("train_loss") for h in run.history], label=name)
            continue
        pixel = [h.get("pixel") for h in run.history]
        if any(v is not None for v in pixel):
            panels[1].plot(steps, pixel, label=ctx.methods[name].row)
        wasserstein = [h.get("wasserstein") for h in run.history]
        if any(v is not None for v in wasserstein):
            panels[2].plot(steps, wasserstein, label=ctx.methods[name].row)
    for ax, title in zip(panels, ("FANs and feature stand-ins: training loss", "super-resolution: pixel term",
                                  "WGAN-GP critic: E[D(real)] - E[D(fake)]")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimiser step")
        if ax.lines:
            ax.legend(fontsize=6)
    panels[0].set_yscale("log")
    panels[1].set_yscale("log")
    fig.tight_layout()
    path = _write(ctx, fig, "6_learning_curves", "Training histories of the chapter's networks (per epoch)")
    return ThesisResult("6.learning_curves", "figure", figure=fig, path=path)
