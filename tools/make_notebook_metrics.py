"""Writes notebooks/metrics.ipynb (kept as a script so the notebook's source is reviewable as text)."""
from nbtools import PARAMETERS, code, md, write_notebook
cells = [
    md("""# Metrics of section 4.1.3 and the 68-point markup

Every table of chapter 4 reports the **normalised mean error** (NME, eq. 4.1), its **cumulative error
distribution** (CED) and the **area under the CED up to 7 %** (AUC@7%). This page regenerates those
definitions with `fa_lib.metrics` on landmark sets whose error is known in advance, and draws the
68-point markup of Fig. 1.2. Nothing here is trained: the ground truth comes from the embedded 3D face
model (random identities, expressions and poses; see the data page), so every number below is a property
of the metric, not of a dataset."""),
    PARAMETERS,
    code("""import time
import pandas as pd
from IPython.display import display
from fa_lib.profiles import get_profile
from fa_lib.results import write_figure, write_table
from fa_lib.experiments import metrics as ex
from fa_lib.widgets import grid_explorer

prof = get_profile(profile)
n_faces = prof.data.test_size          # as many faces as the profile's test set
started = time.perf_counter()
print(f"profile {prof.name}: {n_faces} faces from the embedded face model, seed {seed}")"""),
    md("""## The 68-point markup (Fig. 1.2)

The thesis uses the iBUG 68-point configuration throughout: 17 points on the jaw, 5 per eyebrow, 9 on the
nose, 6 per eye and 20 on the mouth. Below, the 68 landmark vertices of the face model's mean face,
seen from the front, numbered from 1 as in the thesis."""),
    code("""frontal, _ = ex.face_model_landmarks(1, fixed_yaws=[0.0], seed=seed, pitch_roll_range=0.0)
fig = ex.markup_figure(frontal[0])
write_figure(fig, "1_2", profile=prof, dataset="embedded face model (mean face, frontal)", seed=seed,
             caption="The 68-point markup (thesis Fig. 1.2) drawn on the embedded face model")
fig"""),
    md("""## NME, CED and AUC@7% on known noise (eq. 4.1)

$$\\text{NME} = \\frac{1}{N}\\sum_{i=1}^{N} \\frac{\\lVert \\tilde L_i - L_i \\rVert_2}{d}, \\qquad d = \\sqrt{w_{bbox}\\,h_{bbox}}$$

with the box taken from the ground-truth 2D landmarks. We add i.i.d. Gaussian noise of standard deviation
$s\\,d$ to each coordinate of each point. The error of one point is then Rayleigh distributed with mean
$s\\sqrt{\\pi/2}$, so the measured mean NME must match that closed form: a check of the implementation
rather than a claim of the thesis. AUC@7% is the area under the CED on $[0, 7\\%]$ divided by 7 %."""),
    code("""gt, yaws = ex.face_model_landmarks(n_faces, seed=seed)
summary, errors = ex.noise_level_table(gt, seed=seed)
display(summary.round(3))
long = summary.melt(id_vars="noise_std_pct", var_name="column", value_name="reproduced")
long["row"] = [f"noise std {v:g}% of d" for v in long.pop("noise_std_pct")]
write_table("4.1.3_noise", long, profile=prof, dataset="embedded face model landmarks + Gaussian noise",
            dataset_size=int(n_faces), seed=seed, wall_time_s=time.perf_counter() - started,
            caption="NME (eq. 4.1) and AUC of ground truth perturbed by known Gaussian noise; "
                    "expected_nme_pct is the Rayleigh mean s*sqrt(pi/2)")
fig = ex.ced_figure(errors)
write_figure(fig, "4_1_3_ced", profile=prof, dataset="embedded face model landmarks + Gaussian noise",
             seed=seed, caption="CED curves and AUC@7% of known noise levels")
fig"""),
    md("""## Why the box and not the eyes (section 4.1.3)

"The traditional metric ... normalized by the interocular distance ... is biased for profile faces for
which the interocular distance can be very small. Hence, we normalize by the bounding box size."
Below, the *same* error in pixels (Gaussian, 2 px per coordinate) is measured both ways on faces of the
face model turned to increasing yaw."""),
    code("""by_yaw = ex.normalisation_by_yaw(n_per_yaw=max(4, n_faces // 10), seed=seed)
display(by_yaw.round(2))
long = by_yaw.melt(id_vars="yaw_deg", var_name="column", value_name="reproduced")
long["row"] = [f"yaw {v:g}" for v in long.pop("yaw_deg")]
write_table("4.1.3_normalisation", long, profile=prof, dataset="embedded face model landmarks + 2 px noise",
            dataset_size=int(len(by_yaw) * max(4, n_faces // 10)), seed=seed,
            caption="Box- vs interocular-normalised NME (median for interocular) of the same pixel error")
fig = ex.normalisation_figure(by_yaw)
write_figure(fig, "4_1_3_normalisation", profile=prof, dataset="embedded face model landmarks",
             seed=seed, caption="The same pixel error normalised by the box and by the interocular distance")
fig"""),
    md("""The box-normalised error barely moves with yaw, while the interocular-normalised one grows by an
order of magnitude towards profile: the thesis's reason for eq. 4.1 holds.

## Gaussian targets and their decoding (thesis 3.1.2, FAN decoding)

FAN regresses one Gaussian heatmap per landmark. A point is read back by the arg-max pixel, moved a
quarter pixel towards the larger neighbour (the official FAN decoding). Move the sliders: the decoded
point (red) follows the true point (green) to within a quarter pixel whatever the offset, and the
error does not depend on sigma for a noise-free target, because the refinement only looks at which
neighbour is larger. The explorer is precomputed, so it works in the static book without a kernel."""),
    code("""sigmas, offsets = (0.75, 1.0, 1.5, 2.0, 3.0), (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
frames, labels, err_grid = ex.gaussian_target_frames(sigmas, offsets)
grid = [frames[i * len(offsets):(i + 1) * len(offsets)] for i in range(len(sigmas))]
display(pd.DataFrame(err_grid, index=[f"sigma {s:g}" for s in sigmas],
                     columns=[f"offset {o:.1f}" for o in offsets]).round(3))
grid_explorer(grid, [f"sigma = {s:g} px" for s in sigmas], [f"offset = {o:.1f} px" for o in offsets],
              row_description="sigma", col_description="offset", width=320, dpi=80,
              title="<b>Gaussian target and decoded point</b>")"""),
    code("""print(f"notebook wall time {time.perf_counter() - started:.1f} s")"""),
]
write_notebook(cells, "notebooks/metrics.ipynb")
