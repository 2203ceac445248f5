"""Chapter 4 experiments (fa_lib.experiments.ch4) at the smoke scale: every table and figure function
runs, writes results with the thesis's labels, and the helpers compute what they claim."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from fa_lib.experiments import ch4


# --------------------------------------------------------------------------------------------------
# pure helpers (hand-computed cases)


def test_setup_scales():
    full = ch4.ch4_setup("full")
    assert full.stem_channels == (64, 128) and full.depth_layers == (3, 8, 36, 3)
    assert full.size_rows == ch4.THESIS_SIZE_ROWS  # the thesis's own layouts at full scale
    assert full.epochs == 40 and full.iterations is None
    quick = ch4.ch4_setup("quick")
    assert [r[1] for r in quick.size_rows] == [2, 1, 1, 1]   # quick runs the 12M..2M layouts only
    widths = [r[2] for r in quick.size_rows]
    assert widths[:2] == [quick.width] * 2 and widths[1] > widths[2] > widths[3]
    assert all(w % 4 == 0 for w in widths)  # the hierarchical block splits channels 1/2, 1/4, 1/4
    assert quick.iterations is not None and quick.input_size == 4 * quick.heatmap_size


def test_scaled_width_keeps_thesis_ratio():
    assert ch4._scaled_width(256, 200) == 200 and ch4._scaled_width(256, 136) == 136
    assert ch4._scaled_width(64, 256) == 64
    assert ch4._scaled_width(128, 200) == 100  # 128 * 200 / 256 = 100


def test_auc_by_bin_hand_computed():
    errors = np.array([0.0, 0.035, 0.07, 0.14, 0.0, 0.0])
    bins = np.array([0, 0, 1, 1, 2, 2])
    out = ch4.auc_by_bin(errors, bins)
    # AUC@7% = mean(max(0, 1 - e / 0.07)): bin 0 -> (1 + 0.5) / 2, bin 1 -> 0, bin 2 -> 1
    assert out["[0-30]"] == pytest.approx(75.0)
    assert out["[30-60]"] == pytest.approx(0.0)
    assert out["[60-90]"] == pytest.approx(100.0)
    assert out["all"] == pytest.approx(100 * 3.5 / 6)


def test_eval_augmentation_is_box_noise_only():
    assert ch4.eval_augmentation(0.0) is None
    aug = ch4.eval_augmentation(0.3)
    assert aug.box_noise == 0.3 and aug.rotation == 0 and not aug.flip and aug.scale == (1.0, 1.0)
    assert aug.colour == 0 and aug.occlusion == 0


def test_reduce_resolution():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)  # white noise: all high frequency
    box = np.array([10, 10, 90, 90], np.float32)                  # sqrt(w*h) = 80 px
    assert ch4.reduce_resolution(image, box, 80) is image         # already that small: unchanged
    low = ch4.reduce_resolution(image, box, 10)
    assert low.shape == image.shape and low.dtype == np.uint8
    assert low.astype(float).std() < 0.5 * image.astype(float).std()  # detail is gone
    flat = np.full((120, 100, 3), 77, np.uint8)
    assert np.array_equal(ch4.reduce_resolution(flat, box, 10), flat)
    with pytest.raises(ValueError):
        ch4.reduce_resolution(image, box, 0)


class _FakeSet:
    """Minimal stand-in for a SyntheticFaces set: arrays of landmarks, boxes and poses."""

    def __init__(self, points, boxes):
        self._a = {"landmarks_2d": points[..., :2], "landmarks_3d": points, "box": boxes,
                   "pose": np.zeros((len(points), 3), np.float32)}

    def array(self, name):
        return self._a[name]

    def __len__(self):
        return len(self._a["box"])


def test_mean_shape_baseline_is_exact_on_identical_shapes():
    rng = np.random.default_rng(1)
    template = rng.uniform(0, 1, (68, 2)).astype(np.float32)
    template[0], template[1] = (0, 0), (1, 1)  # spans the unit box
    offsets = rng.uniform(0, 50, (5, 1, 2)).astype(np.float32)
    sizes = rng.uniform(40, 80, (5, 1, 1)).astype(np.float32)
    pts2 = offsets + template[None] * sizes
    pts = np.concatenate([pts2, np.zeros((5, 68, 1), np.float32)], -1)
    boxes = np.concatenate([pts2.min(1), pts2.max(1)], -1)
    fake = _FakeSet(pts, boxes)
    shape = ch4.mean_shape(fake, "2d")
    np.testing.assert_allclose(shape, template, atol=1e-5)
    assert ch4.mean_shape_errors(shape, fake, "2d", box_noise=0.0).max() < 1e-5
    assert ch4.mean_shape_errors(shape, fake, "2d", box_noise=0.2).mean() > 0.01


def test_narratives_follow_the_numbers():
    def table(values):
        return pd.DataFrame([{"row": "3D-FAN", "column": c, "reproduced": v}
                             for c, v in zip(ch4.YAW_BIN_LABELS, values)])

    assert "holds here" in ch4.narrate_table_4_2(table([70.0, 71.0, 66.0]))
    assert "does not hold" in ch4.narrate_table_4_2(table([70.0, 71.0, 20.0]))
    noise = pd.DataFrame([{"row": f"noise {n}%", "column": "all", "reproduced": v}
                          for n, v in zip((0, 10, 20, 30), (70.0, 69.0, 67.0, 55.0))])
    assert "tolerates" in ch4.narrate_table_4_3(noise)
    noise["reproduced"] = [70.0, 50.0, 30.0, 29.0]
    assert "does not hold" in ch4.narrate_table_4_3(noise)


def test_paper_vs_ours_puts_both_sides_in_one_cell():
    df = pd.DataFrame([{"row": "3D-FAN", "column": "[0-30]", "reproduced": 61.25}])
    wide = ch4.paper_vs_ours("4.2", df)
    assert wide.loc["3D-FAN", "[0-30]"] == "61.2 | 73.5"
    assert wide.loc["3D-FAN", "[60-90]"] == "— | 68.8"


# --------------------------------------------------------------------------------------------------
# the smoke pipeline: one training for the whole module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    root = tmp_path_factory.mktemp("checkpoints")
    mp = pytest.MonkeyPatch()
    mp.setenv("FA_LIB_RESULTS", str(results))
    # smoke networks are tiny: one thread avoids the thread pool's fork/join cost, which dominates
    # (and, on a machine shared by other jobs, multiplies) the run time of such small ops
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    setup = ch4.ch4_setup("smoke")
    data = ch4.load_data(setup, seed=0)
    models = ch4.train_models(setup, data, seed=0, root=root, device="cpu")
    preds = ch4.predict_all(models, data, setup, device="cpu")
    yield {"setup": setup, "data": data, "models": models, "preds": preds, "results": results, "root": root}
    torch.set_num_threads(threads)
    mp.undo()


def test_models_are_trained_once_and_cached(smoke):
    setup, data, root = smoke["setup"], smoke["data"], smoke["root"]
    models = smoke["models"]
    assert set(models) == set(ch4.MODEL_NAMES)
    assert all(not m.cached for m in models.values())
    assert models["2D-to-3D-FAN"].model.in_channels == 3 + 68
    again = ch4.train_fan("3d", setup, data, seed=0, root=root, device="cpu")
    assert again.cached and again.budget["iterations"] == setup.iterations
    for a, b in zip(again.model.state_dict().values(), models["3D-FAN"].model.state_dict().values()):
        assert torch.equal(a, b)
    summary = ch4.budget_summary(models)
    assert list(summary["model"]) == list(ch4.MODEL_NAMES)


def test_predictions_cover_the_test_set(smoke):
    preds, data = smoke["preds"], smoke["data"]
    n = len(data.test)
    assert preds.fan2d.predictions.shape == (n, 68, 2) and preds.fan3d.nme.shape == (n,)
    assert preds.depth_z.shape == (n, 68)
    np.testing.assert_allclose(preds.depth_z.mean(axis=1), 0, atol=1e-3)  # relative depth
    assert np.all(preds.baseline3d > 0) and set(np.unique(preds.bins)) <= {0, 1, 2}
    assert "mean NME" in ch4.narrate_training(smoke["models"], preds)


def _written(smoke, table_id):
    df = pd.read_csv(smoke["results"] / "tables" / f"table_{table_id}.csv")
    assert list(df.columns) == ["row", "column", "paper", "reproduced"]
    return df


def test_tables_4_1_to_4_3_use_thesis_labels(smoke):
    s = smoke
    t41 = ch4.table_4_1(s["preds"], s["models"], s["setup"], s["data"])
    assert set(t41["column"]) == {"2D-FAN", "mean shape (baseline)"}
    ch4.narrate_table_4_1(t41)
    t42 = ch4.table_4_2(s["preds"], s["models"], s["setup"], s["data"])
    written = _written(s, "4.2")
    cells = written[(written["row"] == "3D-FAN") & written["column"].isin(ch4.YAW_BIN_LABELS)]
    assert len(cells) == 3 and cells["paper"].notna().all() and cells["reproduced"].notna().all()
    assert t42[t42["row"] == "#images"]["reproduced"].sum() == len(s["data"].test)
    t43, errors = ch4.table_4_3(s["models"], s["setup"], s["data"], device="cpu")
    assert set(errors) == set(ch4.NOISE_LEVELS)
    written = _written(s, "4.3")
    matched = written.dropna(subset=["paper", "reproduced"])
    assert len(matched) == 12  # 4 noise levels x 3 yaw bins sit beside the thesis's cells


def test_table_4_4_reuses_3d_fan_and_counts_parameters(smoke):
    s = smoke
    setup = replace(s["setup"], size_rows=tuple(r for r in s["setup"].size_rows if r[0] in ("12M", "6M")))
    df, variants = ch4.table_4_4(s["models"], setup, s["data"], root=s["root"], device="cpu")
    assert variants["6M"] is s["models"]["3D-FAN"]  # smoke 3D-FAN is the 1-stack layout
    thesis_params = df[(df["row"] == "12M") & (df["column"] == "#params (same layout, thesis scale)")]
    assert float(thesis_params["reproduced"].iloc[0]) == 12_106_504  # official FAN(2), FACTS.md 1
    ours = df[(df["row"] == "12M") & (df["column"] == "#params (ours, this scale)")]["reproduced"].iloc[0]
    assert ours == variants["12M"].parameters


def test_figures(smoke):
    s = smoke
    args = (s["preds"], s["setup"], s["data"])
    assert isinstance(ch4.fig_4_8(*args, models=s["models"]), Figure)
    assert isinstance(ch4.fig_4_9(*args, models=s["models"]), Figure)
    fig, summary = ch4.fig_4_6(*args, models=s["models"])
    assert "no conversion (2D labels as 3D)" in set(summary["curve"])
    ch4.narrate_fig_4_6(summary)
    fig, depth = ch4.fig_4_12(*args, models=s["models"])
    ch4.narrate_fig_4_12(depth)
    fig, res = ch4.fig_4_10(s["models"], s["setup"], s["data"], device="cpu")
    assert res["native"].sum() == 4 and set(res["bin"]) == {*ch4.YAW_BIN_LABELS, "all"}
    ch4.narrate_fig_4_10(res, s["setup"])
    figs = ch4.fitting_examples(*args, models=s["models"], per_bin=1)
    assert set(figs) == {"4_13", "4_14", "4_15"}
    for fig_id in ("4_6", "4_8", "4_9", "4_10", "4_12", "4_13", "4_14", "4_15"):
        assert (s["results"] / "figures" / f"fig_{fig_id}.png").stat().st_size > 1000


def test_speed_table_has_paper_rows(smoke):
    s = smoke
    df = ch4.speed_table(s["setup"], variants={"6M": s["models"]["3D-FAN"]}, repeats=1)
    col = f"frames/s ({s['setup'].name} scale, {s['setup'].input_size} px)"
    assert (df[df["column"] == col]["reproduced"] > 0).all()
    paper = df[df["row"].str.startswith("thesis")]
    assert sorted(paper["reproduced"]) == [29.0, 150.0]
    assert "frames/s" in ch4.narrate_speed(df, s["setup"])


def test_fan_predictor_and_explorers(smoke):
    s = smoke
    predictor = ch4.FanPredictor(s["models"]["2D-FAN"].model, s["setup"])
    sample = s["data"].test[0]
    pred = predictor.predict(sample["image"], sample["box"][None])
    assert len(pred.landmarks) == 1 and pred.landmarks[0].shape == (68, 2)
    with pytest.raises(ValueError, match="boxes"):
        predictor.predict(sample["image"])
    frames, labels, nme = ch4.pose_explorer_frames(s["models"], s["setup"], yaws=(-60, 0, 60), device="cpu")
    assert len(frames) == len(labels) == 3 and list(nme["yaw"]) == [-60, 0, 60]
    frames, labels = ch4.resolution_explorer_frames(s["models"], s["setup"], s["data"], sizes=(8,), device="cpu")
    assert labels == ["8 px"] and isinstance(frames[0], Figure)
