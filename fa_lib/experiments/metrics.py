"""The metrics of thesis section 4.1.3 and the 68-point markup (Fig. 1.2), regenerated with fa_lib.

Nothing here trains a network. The experiments take landmark sets of the embedded 3D face model
(random identities and expressions, posed across yaw, orthographic projection), perturb them with
known noise and measure them with :mod:`fa_lib.metrics`. They illustrate three statements of the
thesis that hold independently of any dataset:

* eq. 4.1 NME normalised by sqrt(w*h) of the ground-truth box, its cumulative error distribution (CED)
  and the area under it up to 7% (AUC@7%, the measure of every chapter-4 table);
* for i.i.d. Gaussian noise of standard deviation ``s*d`` per coordinate the point error is Rayleigh
  distributed, so the expected NME is ``s*sqrt(pi/2)``: a closed form the implementation must meet;
* section 4.1.3: "the interocular distance ... is biased for profile faces": the same pixel error
  gives a much larger interocular-normalised error as |yaw| grows, while the box-normalised one
  stays nearly flat. That is why the thesis normalises by the box.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fa_lib import geometry, heatmaps, landmarks, metrics
from fa_lib.data.face_model import load_face_model
from fa_lib.experiments.plotting import GROUND_TRUTH, PREDICTION, ced_axes

#: colours of the face parts in the markup figure (Fig. 1.2)
PART_COLOURS = {
    "jaw": "#1f77b4", "right_brow": "#ff7f0e", "left_brow": "#ff7f0e", "nose_bridge": "#2ca02c",
    "nose_lower": "#2ca02c", "right_eye": "#d62728", "left_eye": "#d62728", "outer_lip": "#9467bd",
    "inner_lip": "#8c564b",
}


def rotation_matrix(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation R = Rz(roll) @ Rx(pitch) @ Ry(yaw) for model coordinates (x right, y up, z forward)."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def face_model_landmarks(n: int, yaw_range: tuple[float, float] = (-90.0, 90.0), seed: int = 0,
                         image_size: float = 256.0, fixed_yaws: np.ndarray | None = None,
                         pitch_roll_range: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Projected "3D" landmarks of ``n`` random faces of the embedded face model.

    Identity and expression come from the model's prior, yaw from ``fixed_yaws`` or uniform in
    ``yaw_range``, pitch and roll uniform in +-``pitch_roll_range``; orthographic projection scaled so the face is about half
    the image. Returns (points (n, 68, 2) image px, yaws (n,) degrees). Landmark positions only: no
    image is rendered.
    """
    model = load_face_model()
    rng = np.random.default_rng(seed)
    yaws = (np.asarray(fixed_yaws, float) if fixed_yaws is not None
            else rng.uniform(yaw_range[0], yaw_range[1], size=n))
    pts = np.empty((len(yaws), 68, 2), np.float32)
    for i, yaw in enumerate(yaws):
        alpha, beta = model.sample_coefficients(rng)
        lm = model.vertices(alpha, beta)[model.landmark_vertices].astype(np.float64)
        lm -= lm.mean(axis=0)
        rot = rotation_matrix(yaw, rng.uniform(-pitch_roll_range, pitch_roll_range),
                              rng.uniform(-pitch_roll_range, pitch_roll_range))
        xyz = lm @ rot.T
        mm_to_px = 0.5 * image_size / 150.0          # a ~150 mm face fills half the image
        pts[i, :, 0] = image_size / 2 + xyz[:, 0] * mm_to_px
        pts[i, :, 1] = image_size / 2 - xyz[:, 1] * mm_to_px
    return pts, yaws


def markup_figure(points: np.ndarray, title: str = "68-point markup (thesis Fig. 1.2)") -> Figure:
    """The 68-point iBUG markup: every point numbered (1-based as in the thesis), parts coloured."""
    fig = Figure(figsize=(5.2, 5.6))
    ax = fig.add_subplot(1, 1, 1)
    for part, idx in landmarks.PARTS_68.items():
        closed = part in {"right_eye", "left_eye", "outer_lip", "inner_lip"}
        loop = np.r_[idx, idx[:1]] if closed else idx
        ax.plot(points[loop, 0], points[loop, 1], "-", color=PART_COLOURS.get(part, "k"), lw=1)
        ax.scatter(points[idx, 0], points[idx, 1], s=14, color=PART_COLOURS.get(part, "k"),
                   label=part.replace("_", " "), zorder=3)
    for i, (x, y) in enumerate(points):
        ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=6, loc="lower center", ncol=3,
              bbox_to_anchor=(0.5, -0.12), frameon=False)
    return fig


def noisy_predictions(gt: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``gt`` plus i.i.d. Gaussian noise of std ``noise * d`` per coordinate (d = sqrt(w*h) of the box)."""
    d = metrics.face_size(geometry.box_from_landmarks(gt))
    return gt + rng.standard_normal(gt.shape) * (noise * d)[:, None, None]


def noise_level_table(gt: np.ndarray, noise_levels=(0.01, 0.02, 0.03, 0.04, 0.06), seed: int = 0
                      ) -> tuple[pd.DataFrame, dict[float, np.ndarray]]:
    """NME (eq. 4.1), AUC@7% and AUC@10% of ground truth perturbed by each noise level.

    Returns the per-level summary (with the Rayleigh expectation ``s*sqrt(pi/2)`` beside the
    measured mean NME) and the per-image NMEs for the CED figure.
    """
    rng = np.random.default_rng(seed)
    rows, errors = [], {}
    for s in noise_levels:
        pred = noisy_predictions(gt, s, rng)
        e = metrics.nme_box(pred, gt)
        errors[s] = e
        rows.append({"noise_std_pct": 100 * s, "mean_nme_pct": 100 * float(e.mean()),
                     "expected_nme_pct": 100 * s * math.sqrt(math.pi / 2),
                     "auc7_pct": 100 * metrics.auc_at(e, 0.07),
                     "auc10_pct": 100 * metrics.auc_at(e, 0.10)})
    return pd.DataFrame(rows), errors


def ced_figure(errors: dict[float, np.ndarray], threshold: float = 0.07) -> Figure:
    """Cumulative error distribution per noise level, AUC@threshold in the legend (thesis 4.1.3)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ced_axes(ax, {f"noise {100 * s:.0f}%": e for s, e in errors.items()}, threshold=threshold,
             title="CED curves of known noise levels")
    ax.set_xlabel("NME (% of sqrt(w*h) of the box), eq. 4.1")
    return fig


def normalisation_by_yaw(n_per_yaw: int = 40, yaws=(0, 15, 30, 45, 60, 75, 90),
                         pixel_noise: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """Box- vs interocular-normalised NME of the same pixel error across yaw (section 4.1.3)."""
    rng = np.random.default_rng(seed)
    rows = []
    for yaw in yaws:
        gt, _ = face_model_landmarks(n_per_yaw, fixed_yaws=np.full(n_per_yaw, float(yaw)),
                                     seed=seed + int(yaw))
        pred = gt + rng.standard_normal(gt.shape) * pixel_noise
        rows.append({"yaw_deg": yaw, "nme_box_pct": 100 * float(metrics.nme_box(pred, gt).mean()),
                     "nme_interocular_pct": 100 * float(np.median(metrics.nme_interocular(pred, gt)))})
    return pd.DataFrame(rows)


def normalisation_figure(df: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(df["yaw_deg"], df["nme_box_pct"], "o-", label="normalised by sqrt(w*h) of the box (eq. 4.1)")
    ax.plot(df["yaw_deg"], df["nme_interocular_pct"], "s-", label="normalised by the interocular distance")
    ax.set_yscale("log")
    ax.set_xlabel("|yaw| (degrees)")
    ax.set_ylabel("NME (%) of the same pixel error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Why the thesis normalises by the box (section 4.1.3)", fontsize=10)
    return fig


def gaussian_target_frames(sigmas=(0.75, 1.0, 1.5, 2.0, 3.0), offsets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
                           size: int = 15) -> tuple[list, list[str], list[list]]:
    """Frames for the Gaussian-target explorer: a target centred at a sub-pixel offset, its decoding.

    For each sigma (thesis 3.1.2: the regression target is a 2D Gaussian) and sub-pixel offset of the
    true point from a pixel centre (x moves by the offset, y by half of it), draw the heatmap with the true point (green cross) and the point decoded by argmax
    with the quarter-pixel refinement (red dot). Returns (flat list of figures in sigma-major order,
    flat labels, the grid of decoding errors in px).
    """
    frames, labels, err_grid = [], [], []
    for sigma in sigmas:
        row = []
        for off in offsets:
            centre = size // 2 + 0.5                      # centre of the middle pixel
            true = np.array([[centre + off, centre + off / 2]], np.float32)
            hm = heatmaps.gaussian_heatmaps(true, size, sigma)
            dec, _ = heatmaps.decode_heatmaps(hm[None])
            dec = dec[0, 0].numpy()
            err = float(np.linalg.norm(dec - true[0]))
            row.append(err)
            fig = Figure(figsize=(3.2, 3.2))
            ax = fig.add_subplot(1, 1, 1)
            ax.imshow(hm[0].numpy(), cmap="magma", extent=(0, size, size, 0), vmin=0, vmax=1)
            ax.plot(true[0, 0], true[0, 1], "x", color=GROUND_TRUTH, ms=10, mew=2, label="true point")
            ax.plot(dec[0], dec[1], "o", color=PREDICTION, ms=5, label="decoded")
            ax.set_title(f"sigma={sigma:g} px, offset={off:.1f} px\ndecoding error {err:.3f} px",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=6, loc="lower left")
            frames.append(fig)
            labels.append(f"sigma {sigma:g}, offset {off:.1f}")
        err_grid.append(row)
    return frames, labels, err_grid
