"""Chapter 5 experiments (fa_lib.experiments.ch5) at a tiny scale: specs, run cache, verdicts, tables,
figures, packed inference and the explorer."""
import json
import math
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from fa_lib.experiments import registry
from fa_lib.experiments.ch5 import Chapter5, explorers, figures, kernels, narrative, packed, scale, tables
from fa_lib.experiments.ch5.context import STACK_PHASES
from fa_lib.experiments.ch5.figures import binary_filters
from fa_lib.experiments.runs import MODEL_FILE, TRAINER_CHECKPOINT, run_key
from fa_lib.profiles import get_profile, with_knobs
from fa_lib.train import Trainer

TINY = dict(input_size=32, width=16, hg_depth=2, iterations=1, batch_size=2, max_stacks=2, depths=(2, 3),
            cardinalities=(1, 2), real_twins=False, threads=1, timing_repeats=1, packed_threads=(1, 2),
            packed_repeats=1, packed_batch=4)


def tiny_profile(**knobs):
    """Smoke data with even smaller networks: 32 px crops, width 16, one optimiser step per run."""
    return with_knobs(get_profile("smoke"), "ch5", **{**TINY, **knobs})


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ch5_results")
    old = os.environ.get("FA_LIB_RESULTS")
    os.environ["FA_LIB_RESULTS"] = str(root)
    yield root
    if old is None:
        del os.environ["FA_LIB_RESULTS"]
    else:
        os.environ["FA_LIB_RESULTS"] = old


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ch5_runs")


@pytest.fixture(scope="module")
def chapter(results_root, runs_root):
    threads = torch.get_num_threads()
    ctx = Chapter5(tiny_profile(), device="cpu", log=None, runs_root=runs_root)  # sets 1 torch thread
    yield ctx, results_root
    torch.set_num_threads(threads)


# -- scale and networks --------------------------------------------------------------------------------

def test_setup_reads_the_typed_profile_section():
    quick = scale.ch5_setup("quick")
    assert quick.heatmap_size == quick.input_size // 4
    assert quick.seeds and len(quick.seeds) >= 2, "the quick profile repeats comparisons over seeds"
    assert quick.workers == 2 and quick.threads == 1 and quick.cardinalities == (1, 2, 4)
    full = scale.ch5_setup("full")
    # the thesis's scale and schedule (5.5.1): 256 px, 256 channels, depth-4 HG, 55 epochs, 2.5e-4 -> 5e-5
    assert (full.input_size, full.width, full.hg_depth, full.stem_channels) == (256, 256, 4, (64, 128))
    assert full.epochs == 55 and full.iterations is None
    assert full.lr == pytest.approx(2.5e-4)
    assert full.lr * full.lr_gamma ** len(full.lr_milestones) == pytest.approx(5e-5)
    assert full.depths == scale.default_depths(256) and full.sweep_seeds == full.seeds[:1]
    config = full.train_config()
    assert (config.optimizer, config.epochs, config.iterations) == ("rmsprop", 55, None)
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_profile(input_size=30)
    with pytest.raises(ValueError, match="unknown ch5 knob"):
        tiny_profile(widht=8)
    # packed inference is timed on one thread first (the explorer's speed), and on a subset on the CPU for full
    assert quick.packed_threads[0] == 1 and quick.packed_images is None
    assert full.packed_images is not None and full.packed_batch <= quick.packed_batch
    # the speed switches reach the trainer; the thesis's float32 training stays the default
    assert quick.train_config().trainer_kwargs()["cpu_bf16"] and quick.train_config().channels_last
    assert not full.cpu_bf16 and "cpu_bf16" not in config.key_record()
    assert quick.train_config().key_record()["cpu_bf16"] is True


def test_default_sweeps_follow_the_thesis_rules():
    # depth: the last layer keeps >= 4 channels; cardinality: each path >= 8 channels
    assert scale.default_depths(256) == (2, 3, 4, 5, 6, 7)
    assert scale.default_depths(64) == (2, 3, 4, 5)
    assert scale.default_cardinalities(256) == (1, 2, 4, 8, 16)
    assert scale.default_cardinalities(64) == (1, 2, 4, 8)


@pytest.mark.parametrize("spec, millions", [
    (scale.OURS, 6.25), (scale.BOTTLENECK, 3.43), (scale.WIDER, 11.29), (scale.MULTISCALE, 3.82),
    (scale.MS_NO1X1, 9.51), (scale.OURS_REDUCED, 3.64), (scale.BOTTLENECK_WIDER_REAL, 7.33)])
def test_thesis_scale_parameter_counts(spec, millions):
    # the same architectures at 256 channels have the counts of fa_lib.models.sizes (thesis 5.1-5.5)
    assert spec.thesis_parameters() / 1e6 == pytest.approx(millions, abs=0.01)


def test_specs_build_at_the_profile_scale(chapter):
    setup = chapter[0].setup
    x = torch.rand(2, 3, setup.input_size, setup.input_size)
    for spec in [*scale.BLOCK_SPECS.values(), scale.OURS_REDUCED, scale.BOTTLENECK_WIDER_REAL,
                 scale.NetSpec(hourglass="improved"), scale.NetSpec(outputs=7), scale.NetSpec(stacks=2)]:
        net = spec.build(setup)
        out = net(x)
        assert len(out) == spec.stacks
        assert out[-1].shape == (2, spec.outputs, setup.heatmap_size, setup.heatmap_size), spec.describe()
    # binary and real twins have the same size; the reduced block is smaller
    assert scale.OURS.build(setup).config["binary"] and not scale.OURS_REAL.build(setup).config["binary"]
    from fa_lib.models.fan import parameter_count

    assert parameter_count(scale.OURS_REDUCED.build(setup)) < parameter_count(scale.OURS.build(setup))


# -- the registry ------------------------------------------------------------------------------------

EXPECTED_TABLES = {f"5.{i}" for i in range(1, 17)} | {"5.5.1_training_time", "5.packed_inference"}
EXPECTED_FIGURES = {"5.2", "5.5", "5.7", "5.8", "5.10", "5.11", "5.12", "5.packed_inference", "5.learning_curves"}


def test_every_chapter_5_builder_is_registered_and_names_its_thesis_item():
    found = registry.builders(5)
    assert {b.thesis_id for b in found if b.kind == "table"} == EXPECTED_TABLES
    assert {b.thesis_id for b in found if b.kind == "figure"} == EXPECTED_FIGURES
    for b in found:
        assert b.function.__module__.startswith("fa_lib.experiments.ch5."), b.qualname
        prefix = "Table" if b.kind == "table" else ("Fig." if b.thesis_id[2:].isdigit() else "Figure")
        assert b.title.startswith(f"{prefix} {b.thesis_id}"), (b.thesis_id, b.title)
        if b.thesis_id != "5.10" or b.kind == "table":  # only Fig. 5.10 (a mask from landmarks) trains nothing
            assert b.trains and all(isinstance(t, str) and "(" in t for t in b.trains), b.thesis_id
    assert registry.find("table 5.2").function is tables.table_5_2
    with pytest.raises(KeyError, match="both a table and a figure"):
        registry.find("5.2")


# -- the run cache -----------------------------------------------------------------------------------

def test_run_key_records_what_changes_the_weights(chapter):
    ctx, _ = chapter

    def key(net=scale.OURS, recipe=scale.LANDMARKS, seed=0, **setup_changes):
        saved = ctx.setup
        ctx.setup = replace(saved, **setup_changes)
        try:
            return run_key(ctx.run_record(net, recipe, seed))
        finally:
            ctx.setup = saved

    base = ctx.run_record(scale.OURS, scale.LANDMARKS, 0)
    assert base["train_set"]["size"] == len(ctx.data.train) and base["seed"] == 0
    assert base["train"]["iterations"] == 1 and base["model"]["width"] == ctx.setup.width
    variants = [key(), key(seed=1), key(recipe=scale.NO_AUGMENTATION), key(recipe=scale.L2_LOSS),
                key(net=scale.OURS_REAL), key(iterations=2), key(lr=1e-3), key(batch_size=4), key(sigma=2.0),
                key(width=8), key(input_size=64), key(stem_channels=(8, 8))]
    assert len(set(variants)) == len(variants)
    # only what a run uses is in its key: the parsing crop does not change a landmark network
    assert key(parsing_zoom=0.5) == key()
    assert key(recipe=scale.PARSING, parsing_zoom=0.5) != key(recipe=scale.PARSING)
    # a stage-wise stack records the smaller network it starts from, and the phases' budget
    stacked = ctx.run_record(scale.stacked_spec(2), scale.LANDMARKS, 0)
    assert stacked["chain"]["previous"] == run_key(base)
    assert key(net=scale.stacked_spec(2), stage_fraction=0.25) != key(net=scale.stacked_spec(2))


def test_a_second_context_on_the_same_runs_root_trains_nothing(chapter, runs_root):
    ctx, _ = chapter
    first = {net: ctx.run(net) for net in (scale.stacked_spec(2), scale.OURS, scale.BOTTLENECK)}
    first[scale.OURS_REDUCED] = ctx.run(scale.OURS_REDUCED, scale.PARSING)
    again = Chapter5(tiny_profile(), device="cpu", log=None, runs_root=runs_root)
    assert again.run(scale.stacked_spec(2)).cached
    # the stacked run was loaded without loading (or training) the 1-stack network it started from
    assert list(again._runs) == [(scale.stacked_spec(2), scale.LANDMARKS, 0)]
    for net, r in first.items():
        recipe = scale.PARSING if net == scale.OURS_REDUCED else scale.LANDMARKS
        loaded = again.run(net, recipe)
        assert loaded.cached and loaded.folder == r.folder
        assert loaded.steps == r.steps and loaded.history == r.history and loaded.note == r.note
        for a, b in zip(loaded.model.state_dict().values(), r.model.state_dict().values()):
            assert torch.equal(a, b)
        if r.nme is not None:  # evaluation is recomputed and gives the same numbers
            assert np.array_equal(loaded.nme, r.nme)
        else:
            assert np.array_equal(loaded.parsing_pred, r.parsing_pred)
    assert again.newly_trained() == [] and len(again.trained()) == len(first)
    # a re-run on the same machine gives identical tables (cached training, deterministic evaluation)
    third = Chapter5(tiny_profile(), device="cpu", log=None, runs_root=runs_root)
    pd.testing.assert_frame_equal(again.build("table 5.2").table, third.build("table 5.2").table)
    # a finished run keeps its weights and meta data, not the trainer's resumable checkpoints
    folder = first[scale.stacked_spec(2)].folder
    assert (folder / MODEL_FILE).is_file() and not (folder / TRAINER_CHECKPOINT).exists()
    assert not any((folder / phase).exists() for phase in STACK_PHASES)


def test_an_interrupted_run_resumes_to_the_same_weights(results_root, tmp_path, monkeypatch):
    # 24 training faces, batch 12: an epoch is 2 steps and ends with a checkpoint; 4 steps in all
    profile = tiny_profile(iterations=4, batch_size=12)
    whole = Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "whole").run(scale.BOTTLENECK)

    calls = []
    original = Trainer._end_epoch

    def interrupt_after_the_first_epoch(self, started):
        original(self, started)
        calls.append(self.step)
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Trainer, "_end_epoch", interrupt_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "cut").run(scale.BOTTLENECK)
    ctx = Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "cut")
    record = ctx.run_record(scale.BOTTLENECK, scale.LANDMARKS, 0)
    folder = ctx.runs.folder(ctx.run_name(scale.BOTTLENECK, scale.LANDMARKS, 0), record)
    assert (folder / TRAINER_CHECKPOINT).is_file()
    assert not ctx.runs.is_finished(ctx.run_name(scale.BOTTLENECK, scale.LANDMARKS, 0), record)
    resumed = ctx.run(scale.BOTTLENECK)
    assert calls == [2, 4] and not resumed.cached and resumed.steps == 4
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(resumed.nme, whole.nme)
    # a checkpoint of other settings is discarded and the run restarts from its initial weights
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    restart = Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "stale")
    stale = restart.runs.folder(restart.run_name(scale.BOTTLENECK, scale.LANDMARKS, 0), record)
    stale.mkdir(parents=True)
    ckpt = torch.load(folder / MODEL_FILE, weights_only=True)
    torch.save({"format": 1, "model": ckpt, "config": {"total_steps": 99}}, stale / TRAINER_CHECKPOINT)
    again = restart.run(scale.BOTTLENECK)
    for a, b in zip(again.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)


def test_forked_train_all_writes_every_run_to_disk(results_root, tmp_path, monkeypatch):
    from fa_lib.experiments.runs import RunCache

    pids = tmp_path / "pids"
    original = RunCache.get_or_train

    def recording(self, name, record, model, train):
        def train_and_record(folder):
            with open(pids, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return train(folder)
        return original(self, name, record, model, train_and_record)

    monkeypatch.setattr(RunCache, "get_or_train", recording)
    profile = tiny_profile(workers=2)
    ctx = Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "runs")
    # three single runs, then two stage-wise chains (the second one's 1-stack base is trained in its chain)
    jobs = [(scale.BOTTLENECK, scale.LANDMARKS, 0), (scale.OURS_REAL, scale.LANDMARKS, 0),
            (scale.OURS, scale.LANDMARKS, 0), (scale.stacked_spec(2), scale.LANDMARKS, 0),
            (scale.stacked_spec(2), scale.NO_AUGMENTATION, 0)]
    ctx.train_all(jobs)
    trained_in = {int(p) for p in pids.read_text().split()}
    assert trained_in and os.getpid() not in trained_in, "the runs were trained in forked processes"
    for net, recipe, seed in jobs + [(scale.OURS, scale.NO_AUGMENTATION, 0)]:
        assert ctx.runs.is_finished(ctx.run_name(net, recipe, seed), ctx.run_record(net, recipe, seed)), net
    assert len(ctx.trained()) == 6 and not any(r.cached for r in ctx.trained())
    later = Chapter5(profile, device="cpu", log=None, runs_root=tmp_path / "runs")
    pids.unlink()
    later.train_all(jobs)
    assert not pids.exists() and later.newly_trained() == []
    assert np.array_equal(later.run(scale.OURS).nme, ctx.run(scale.OURS).nme)


# -- verdicts ----------------------------------------------------------------------------------------

def test_judging_metric_and_seed_noise_hand_cases():
    class Run:
        def __init__(self, auc, nme, net="a"):
            self.auc, self.mean_nme, self.nme, self.net, self.recipe = auc, nme, [nme], net, "r"

    score, metric = tables.judging_metric([[Run(0.0, 50.0), Run(0.5, 40.0)]])
    assert metric.startswith("mean NME") and score(Run(0.0, 40.0)) == -40.0  # AUC ~0 everywhere: judge on NME
    # a few faces under 7% error: the AUC would order a handful of faces, the NME orders all of them
    _, metric = tables.judging_metric([[Run(3.0, 9.0), Run(tables.AUC_JUDGING_FLOOR - 0.1, 8.0)]])
    assert metric.startswith("mean NME")
    score, metric = tables.judging_metric([[Run(0.0, 50.0), Run(20.0, 9.0)]])
    assert metric == "AUC@7%" and score(Run(20.0, 9.0)) == 20.0

    class Ctx:
        def trained(self):
            return [Run(10, 0, "a"), Run(12, 0, "a"), Run(20, 0, "b")]

    assert tables.seed_noise(Ctx()) == pytest.approx(math.sqrt(2.0))  # only "a" has two seeds


def test_tables_write_the_thesis_labels_and_verdicts(chapter):
    ctx, root = chapter
    result = ctx.build("table 5.1")
    table = pd.read_csv(root / "tables" / "table_5.1.csv")
    assert list(table.columns) == ["row", "column", "paper", "reproduced"]
    got = table.set_index(["row", "column"])
    for row in ("Bottleneck (real)", "Bottleneck (binary)"):
        assert not math.isnan(got.loc[(row, "AUC"), "paper"])           # thesis value sits beside ours
        assert not math.isnan(got.loc[(row, "AUC"), "reproduced"])
        assert got.loc[(row, "#params(M)"), "reproduced"] > 0
    prov = json.loads((root / "tables" / "table_5.1.json").read_text())
    assert prov["profile"] == "smoke" and prov["training_budget"]["iterations"] == 1
    assert prov["training_budget"]["seeds"] == [0]
    assert len(prov["networks"]["Bottleneck (real)"]) == len(ctx.seeds)
    (v,) = result.verdicts
    assert v.better == "Bottleneck (real)" and v.worse == "Bottleneck (binary)" and v.paper_gap == pytest.approx(16.1)
    # one seed per side and no configuration with two seeds: no spread, nothing concluded
    assert v.outcome == "single seed" and v.holds is None and math.isnan(v.standard_error)
    assert prov["verdicts"][0]["outcome"] == "single seed"
    # the same run is shared, not retrained, by the next table
    n = len(ctx.trained())
    ctx.build("table 5.4")
    assert len(ctx.trained()) == n + 1  # only the reduced block is new
    summary = ctx.verdict_table()
    assert set(summary["result"]) == {"table 5.1", "table 5.4"} and set(summary["outcome"]) == {"single seed"}
    assert "0 hold" in narrative.describe_verdicts(summary)


def test_with_two_seeds_the_gap_is_judged_against_its_standard_error(results_root, runs_root):
    ctx = Chapter5(tiny_profile(seeds=(0, 1)), device="cpu", log=None, runs_root=runs_root)
    result = ctx.build("table 5.1")
    (v,) = result.verdicts
    cells = result.table.set_index(["row", "column"])["reproduced"]
    if v.metric == "AUC@7%":
        gap = cells[("Bottleneck (real)", "AUC")] - cells[("Bottleneck (binary)", "AUC")]
    else:
        gap = cells[("Bottleneck (binary)", "NME (%)")] - cells[("Bottleneck (real)", "NME (%)")]
    assert v.gap == pytest.approx(gap, abs=1e-9) and v.seeds == (2, 2)
    assert math.isfinite(v.standard_error)
    expected = "within noise" if abs(v.gap) <= 2 * v.standard_error else ("holds" if v.gap > 0 else "reversed")
    assert v.outcome == expected and v.holds == {"holds": True, "reversed": False}.get(expected)
    # the seed-0 runs are those of the one-seed context (same runs root): only seed 1 was trained
    assert {r.seed for r in ctx.newly_trained()} == {1}


def test_nme_tables_and_parsing(chapter):
    ctx, root = chapter
    t13 = ctx.build("table 5.13")
    ours = t13.table[t13.table["row"] == "Ours (binary)"].set_index("column")
    assert {"[0-30]", "[30-60]", "[60-90]", "mean"} <= set(ours.index)
    assert ours.loc["mean", "paper"] == pytest.approx(3.26)
    assert np.isfinite(ours.loc["mean", "reproduced"])
    assert [v.outcome for v in t13.verdicts] == ["not measurable"]  # the baselines are paper-only
    t12 = ctx.build("table 5.12")
    assert np.isfinite(t12.table.set_index(["row", "column"]).loc[("Ours (binary)", "AFLW-PIFA all 34"), "reproduced"])
    t16 = ctx.build("table 5.16")
    cells = t16.table.set_index(["row", "column"])
    for row in ("Real, bottleneck", "Binary, bottleneck", "Binary, Ours"):
        value = cells.loc[(row, "pixel acc."), "reproduced"]
        assert 0.0 <= value <= 100.0
    assert len(t16.verdicts) == 4 and {v.outcome for v in t16.verdicts} == {"single seed"}
    run = ctx.run(scale.OURS_REDUCED, scale.PARSING)
    assert run.net.outputs == 7 and run.parsing_pred.shape[1:] == (ctx.setup.parsing_output_size,) * 2


def test_stagewise_stacks_start_from_the_smaller_network(chapter):
    ctx, root = chapter
    one = ctx.run(scale.OURS)
    two = ctx.run(scale.NetSpec(stacks=2))
    assert "stage-wise" in two.note
    # 5.7.2: the 1-stack run, then the new stack alone, then everything jointly (one step each here)
    phases = [h.get("phase") for h in two.history]
    assert phases[-2:] == ["stage2", "joint"]
    assert two.steps == one.steps + 2
    assert two.history[:len(one.history)] == one.history
    t15 = ctx.build("table 5.15")
    steps = t15.table.set_index(["row", "column"])["reproduced"]
    assert steps[("1 stack", "training steps")] == one.steps and steps[("2 stacks", "training steps")] == two.steps


def test_figures_and_explorer(chapter):
    ctx, root = chapter
    signs, layer, distinct = binary_filters(ctx.run(scale.OURS))
    assert set(np.unique(signs)) <= {-1.0, 1.0} and 1 <= distinct <= 512
    f2 = ctx.build("figure 5.2")
    assert f2.kind == "figure" and f2.figure is not None and f2.data["distinct_patterns"] == distinct
    ctx.build("figure 5.10")
    assert (root / "figures" / "fig_5_2.png").exists() and (root / "figures" / "fig_5_10.json").exists()
    f7 = ctx.build("figure 5.7")
    assert list(f7.data["points"]["block depth"]) == [2, 3]
    (v,) = f7.verdicts
    assert (v.better, v.worse) == ("block depth 3", "block depth 2") and v.outcome == "single seed"
    assert f7.data["caption"].startswith("mean NME" if "NME" in v.metric else "AUC@7%")  # names what is plotted
    frames, labels, df = explorers.binarization_explorer_frames(ctx)
    assert len(frames) == len(labels) == len(df) and "hierarchical, binary" in set(df["network"])
    assert all(label.startswith(network) for label, network in zip(labels, df["network"]))


def test_conv_macs_and_interleaved_timing_hand_cases():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    assert packed.conv_macs(conv, 8) == {"": 8 * 8 * 4 * 3 * 9}  # output pixels x Cout x Cin x taps
    calls = []
    best = packed.interleaved_min_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b"] * 3  # one warm-up call each, then every round calls every candidate in turn
    assert set(best) == {"a", "b"} and all(0 <= v < 1 for v in best.values())


def test_packed_inference_of_the_trained_networks(chapter):
    ctx, root = chapter
    ctx.run(scale.NetSpec(stacks=2))  # a trained stack is included
    built = ctx.build("table 5.packed_inference")
    result = built.data["packed"]
    assert ctx.packed_inference is result and built.notes and not built.verdicts
    binary = {m["label"]: m for m in result.measurements.values() if m["binary"]}
    assert {f"{name}, binary" for name in scale.BLOCK_SPECS} | {"hierarchical, binary, improved HG",
                                                                "hierarchical, binary, 2 stacks"} == set(binary)
    for label, m in binary.items():
        # the packed module gives the training-time forward's heatmaps and exactly the same landmarks when
        # that forward runs in the packed module's real-layer layout (channels-last)
        assert m["relative_diff_channels_last"] <= 1e-4, label
        assert m["differing_landmarks_channels_last"] == 0 and m["landmarks"] == len(ctx.data.test) * 68, label
        # with NCHW real layers, the training forward itself, bit for bit
        assert m["relative_diff_nchw_real_layers"] == 0.0 and m["differing_landmarks_nchw_real_layers"] == 0, label
        # the default against the NCHW forward too, unless the float forward itself changes with the layout
        if m["float_layout_differing_landmarks"] == 0:
            assert m["relative_diff"] <= 1e-4, label
            assert m["differing_landmarks"] == 0, label
            assert m["nme_float"] == pytest.approx(m["nme_packed"], abs=1e-9), label
        assert m["round_trip_exact"], label
        # fast real layers (BN folded, oneDNN conv + ReLU): their rounding can flip a sign taken at a threshold,
        # so a few landmarks may move, the accuracy not
        assert m["differing_landmarks_fast_real_layers"] <= 0.02 * m["landmarks"], label
        assert m["nme_packed_fast"] == pytest.approx(m["nme_packed"], abs=0.05), label
        assert all(t["speedup_fast"] > 0 for t in m["timing"].values()), label
        # every binary convolution runs packed; the real stem conv and 1x1 heads do not
        assert m["binary_convs"] > 0 and m["binary_convs_left_float"] == 0, label
        assert 0 < m["packed_macs"] < m["conv_macs"], label
        assert set(m["timing"]) == {1, 2}
        for t in (1, 2):
            timing = m["timing"][t]
            assert timing["float_ms"] > 0 and timing["packed_ms"] > 0
            assert timing["speedup"] == pytest.approx(timing["float_ms"] / timing["packed_ms"])
    # the float side is the chapter's own trained model: same NME as its evaluation
    assert binary["hierarchical, binary"]["nme_float"] == pytest.approx(ctx.run(scale.OURS).mean_nme, rel=1e-6)
    table = pd.read_csv(root / "tables" / "table_5.packed_inference.csv")
    assert list(table.columns) == ["row", "column", "paper", "reproduced"] and table["paper"].isna().all()
    cells = table.set_index(["row", "column"])["reproduced"]
    expected = {"max |heatmap diff|", "max |heatmap diff| / max |heatmap|", "differing landmarks",
                "landmarks compared", "NME float (%)", "NME packed (%)", "conv MACs packed (%)",
                "float32 state_dict (kB)", "packed file (kB)", "size ratio (x)", "file round trip exact",
                "differing landmarks, float channels-last", "differing landmarks, float NCHW vs channels-last",
                "float ms per image (1 thread)", f"packed ms per image ({result.isa}, 1 thread)", "speed-up (1 thread)",
                "float ms per image (2 threads)", f"packed ms per image ({result.isa}, 2 threads)",
                "speed-up (2 threads)"}
    for label in binary:
        assert expected <= set(cells.loc[label].index), label
    assert cells.loc[("hierarchical, binary", "differing landmarks")] == 0
    assert "speed-up vs real twin (1 thread)" in cells.loc["hierarchical, binary"].index  # real twin timed too
    assert cells.loc[("hierarchical, real", "float ms per image (1 thread)")] > 0
    prov = json.loads((root / "tables" / "table_5.packed_inference.json").read_text())
    from fa_lib.kernels import xnor

    assert prov["isa"] == result.isa == xnor.resolve_isa() and prov["threads"] == [1, 2]
    assert prov["timing_batch"] == 4 and prov["profile"] == "smoke"
    fig = ctx.build("figure 5.packed_inference")
    assert fig.data["packed"] is result and (root / "figures" / "fig_5_packed_inference.png").exists()
    assert f"**{len(binary)} of {len(binary)}**" in built.verdict_markdown()


def test_explorer_shows_the_measured_speed(chapter):
    ctx, root = chapter
    result = packed.measured(ctx)
    frames, labels, df = explorers.binarization_explorer_frames(ctx, packed=result)
    rows = df.set_index("network")
    for label in labels:
        network = label.split(":")[0]
        spec = next(r.net for lab, r in explorers.explorer_networks(ctx) if lab == network)
        speed = result.speed(spec, 1)
        if spec.binary:  # the packed module's speed-up measured above, in the label and the table
            assert f"packed {speed['speedup']:.1f}x faster than float (1 thread)" in label
            assert rows.loc[network, "packed speed-up (1 thread)"] == pytest.approx(speed["speedup"])
        else:
            assert f"float {speed['float_ms']:.2f} ms/image (1 thread)" in label
            assert math.isnan(rows.loc[network, "packed speed-up (1 thread)"])


def test_kernel_targets_table_picks_the_fastest_path_and_judges_each_target():
    def row(layer, isa, threads, speedup, with_pack=None):
        return {"layer": layer, "isa": isa, "threads": threads, "torch_ms": 10.0, "binary_ms": 10.0 / speedup,
                "binary_with_pack_ms": 10.0 / (with_pack or speedup), "speedup": speedup,
                "speedup_with_pack": with_pack or speedup}
    conv, block = "conv3x3 256->128 @64x64", "hierarchical block 256->256 @64x64"
    net = "network: binary HG (1 stack, 256 ch, 256x256 input)"
    bench = pd.DataFrame([
        row(conv, "amx", 1, 20.0, 18.5), row(conv, "avx512", 1, 11.0, 9.0), row(conv, "avx2", 1, 3.5),
        row(block, "amx", 1, 14.0), row(block, "avx512", 1, 9.0), row(net, "amx", 1, 6.0),
        row(conv, "avx2 (torch on AVX2 too)", 1, 5.5), row(conv, "amx", 2, 30.0, 30.0),
        row("conv3x3 64->64 @64x64", "avx2 (torch on AVX2 too)", 1, 4.5),
        row("conv3x3 64->64 @4x4", "avx2 (torch on AVX2 too)", 1, 2.0),  # not a 64x64 layer: not judged
    ])
    t = kernels.kernel_targets_table(bench).set_index("measurement")
    assert len(t) == 5 and set(t["threads"]) == {1}
    worst = t.iloc[4]
    assert "64->64 @64x64" in t.index[4] and worst["speed-up"] == 4.5 and not worst["met"]
    first = t.iloc[0]
    assert first["isa"] == "amx" and first["speed-up"] == 18.5 and first["met"]  # with packing, 1 thread
    assert t.iloc[1]["speed-up"] == 14.0 and not t.iloc[1]["met"]
    assert t.iloc[2]["speed-up"] == 6.0 and not t.iloc[2]["met"]
    assert t.iloc[3]["isa"] == "avx2 (torch on AVX2 too)" and t.iloc[3]["met"]  # the emulated AVX2-only rows
    text = narrative.describe_kernel_targets(kernels.kernel_targets_table(bench))
    assert text.startswith("**2 of 5**") and "target 15x, not met" in text
    # without the emulation, the plain avx2 rows (torch on AVX-512) stand in
    plain = kernels.kernel_targets_table(bench[bench["isa"] != "avx2 (torch on AVX2 too)"])
    assert plain.iloc[3]["isa"] == "avx2" and not plain.iloc[3]["met"]
    assert narrative.describe_kernel_targets(pd.DataFrame()).startswith("The kernels' benchmark has no rows")
    assert list(kernels.one_thread_speedups(bench).index) == [conv, block, net, "conv3x3 64->64 @64x64"]


def test_held_out_faces_give_learning_curves(results_root, tmp_path):
    """With ``val_fraction`` the landmark runs train on the rest and record a validation NME per
    epoch; the held-out part changes the run key; figure 5.learning_curves draws them."""
    threads = torch.get_num_threads()
    try:
        ctx = Chapter5(tiny_profile(val_fraction=0.25, iterations=2), device="cpu", log=None, runs_root=tmp_path)
        plain = Chapter5(tiny_profile(iterations=2, val_fraction=0.0), device="cpu", log=None, runs_root=tmp_path)
        record = ctx.run_record(scale.OURS, scale.LANDMARKS, 0)
        assert record["held_out"] == {"fraction": 0.25, "split_seed": 0}
        assert "held_out" not in plain.run_record(scale.OURS, scale.LANDMARKS, 0)
        train, val = ctx._split()
        assert len(train) + len(val) == len(ctx.data.train) and len(val) == round(0.25 * len(ctx.data.train))
        assert ctx.validation_set(scale.PARSING) is None and plain.validation_set(scale.LANDMARKS) is None
        run = ctx.run(scale.OURS)
        assert [h["step"] for h in run.history if "val_nme" in h] == [2]
        assert all(math.isfinite(h["val_nme"]) for h in run.history if "val_nme" in h)
        result = ctx.build("figure 5.learning_curves")
        assert set(result.data["curves"]["network"]) == {label for label, _ in figures.CURVE_NETWORKS}
        assert len(result.data["summary"]) >= 4 and (results_root / "figures" / "fig_5_learning_curves.png").exists()
        empty = plain.build("figure 5.learning_curves")
        assert empty.data["curves"].empty and empty.notes
    finally:
        torch.set_num_threads(threads)


def test_ch5_section_rejects_unknown_optimiser_and_bad_fraction():
    with pytest.raises(ValueError, match="optimizer"):
        tiny_profile(optimizer="lbfgs")
    with pytest.raises(ValueError, match="val_fraction"):
        tiny_profile(val_fraction=1.0)
    assert scale.ch5_setup(tiny_profile(optimizer="adam")).train_config().optimizer == "adam"


def test_kernel_targets_are_judged_machine_by_machine():
    def row(isa, speedup, kind, cpu, fast=None):
        return {"layer": "network: binary HG (1 stack, 256 ch, 256x256 input)", "isa": isa, "threads": 1,
                "torch_ms": 100.0, "binary_ms": 100.0 / speedup, "binary_with_pack_ms": 100.0 / speedup,
                "speedup": speedup, "speedup_with_pack": speedup,
                "torch_fast_ms": None if fast is None else 100.0 / speedup * fast,
                "speedup_vs_fast": fast, "cpu": cpu, "machine_kind": kind}
    bench = pd.DataFrame([row("amx", 9.0, "AMX (Intel)", "Xeon"),
                          row("avx512", 6.5, "AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4)", "EPYC", fast=4.0)])
    t = kernels.kernel_targets_table(bench)
    by_machine = {m: rows for m, rows in t.groupby("machine")}
    assert set(by_machine) == {"Xeon (AMX (Intel))", "EPYC (AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4))"}
    epyc = by_machine["EPYC (AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4))"].set_index("measurement")
    assert epyc.iloc[0]["speed-up"] == 6.5 and not epyc.iloc[0]["met"]  # not the Xeon's 9.0
    assert epyc.iloc[1]["speed-up"] == 4.0 and epyc.iloc[1]["target"] == 6.0
    assert len(by_machine["Xeon (AMX (Intel))"]) == 1  # no fast-float row measured there
    text = narrative.describe_kernel_targets(t)
    assert "on Xeon (AMX (Intel))" in text and "on EPYC" in text


def test_network_profile_table_and_its_narrative(tmp_path):
    rows = [{"part": part, "ms": ms, "share": 0.0, "cpu": "EPYC", "machine_kind": "Zen 4", "threads": 1,
             "isa": "avx512", "real_layers": mode}
            for mode, parts in (("channels_last", {"binary hierarchical blocks (packed)": 8.0,
                                                   "real conv 1x1 (heads)": 7.0,
                                                   "real batch norm (outside blocks)": 0.5}),
                                ("fast", {"binary hierarchical blocks (packed)": 8.0, "real conv 1x1 (heads)": 3.0}))
            for part, ms in parts.items()]
    path = tmp_path / "profile.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = kernels.network_profile_table(path)
    assert list(table.columns) == ["exact real layers (ms)", "fast real layers (ms)"]
    assert table.loc["total", "exact real layers (ms)"] == 15.5 and table.loc["total", "fast real layers (ms)"] == 11.0
    text = narrative.describe_network_profile(table)
    assert "EPYC" in text and "**15.5 ms**" in text and "**11.0 ms**" in text and "73%" in text
    assert kernels.network_profile_table(tmp_path / "missing.csv") is None
    assert "not profiled" in narrative.describe_network_profile(None)
