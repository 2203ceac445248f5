"""Chapter 5 experiments (fa_lib.experiments.ch5) at a tiny scale: specs, statistics, tables, figures."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fa_lib.experiments import ch5 as ex
from fa_lib.profiles import get_profile, with_extra


def tiny_profile():
    """Smoke data with even smaller networks: 32 px crops, width 16, one optimiser step per run."""
    return with_extra(get_profile("smoke"), ch5_input_size=32, ch5_width=16, ch5_hg_depth=2, ch5_iterations=1,
                      ch5_batch_size=2, ch5_max_stacks=2, ch5_depths=(2, 3), ch5_cardinalities=(1, 2),
                      ch5_real_twins=False, ch5_threads=1, ch5_timing_repeats=1, ch5_packed_threads=(1, 2),
                      ch5_packed_repeats=1, ch5_packed_batch=4)


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("ch5_results")
    old = os.environ.get("FA_LIB_RESULTS")
    os.environ["FA_LIB_RESULTS"] = str(root)
    threads = torch.get_num_threads()
    ch = ex.Chapter5(tiny_profile(), device="cpu", log=None)  # sets 1 torch thread (ch5_threads)
    yield ch, root
    torch.set_num_threads(threads)
    if old is None:
        del os.environ["FA_LIB_RESULTS"]
    else:
        os.environ["FA_LIB_RESULTS"] = old


def test_setup_reads_profiles():
    quick = ex.ch5_setup("quick")
    assert quick.heatmap_size == quick.input_size // 4
    assert quick.seeds and len(quick.seeds) >= 2, "the quick profile repeats comparisons over seeds"
    full = ex.ch5_setup("full")
    # the thesis's scale and schedule (5.5.1): 256 px, 256 channels, depth-4 HG, 55 epochs, 2.5e-4 -> 5e-5
    assert (full.input_size, full.width, full.hg_depth, full.stem_channels) == (256, 256, 4, (64, 128))
    assert full.epochs == 55 and full.iterations is None
    assert full.lr == pytest.approx(2.5e-4)
    assert full.lr * full.lr_gamma ** len(full.lr_milestones) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="multiple of 4"):
        ex.ch5_setup(with_extra(get_profile("smoke"), ch5_input_size=30))
    # packed inference is timed on one thread first (the explorer's speed), and on a subset on the CPU for full
    assert quick.packed_threads[0] == 1 and quick.packed_images is None
    assert full.packed_images is not None and full.packed_batch <= quick.packed_batch


def test_default_sweeps_follow_the_thesis_rules():
    # depth: the last layer keeps >= 4 channels; cardinality: each path >= 8 channels
    assert ex._default_depths(256) == (2, 3, 4, 5, 6, 7)
    assert ex._default_depths(64) == (2, 3, 4, 5)
    assert ex._default_cardinalities(256) == (1, 2, 4, 8, 16)
    assert ex._default_cardinalities(64) == (1, 2, 4, 8)


@pytest.mark.parametrize("spec, millions", [
    (ex.OURS, 6.25), (ex.BOTTLENECK, 3.43), (ex.WIDER, 11.29), (ex.MULTISCALE, 3.82), (ex.MS_NO1X1, 9.51),
    (ex.OURS_REDUCED, 3.64), (ex.BOTTLENECK_WIDER_REAL, 7.33)])
def test_thesis_scale_parameter_counts(spec, millions):
    # the same architectures at 256 channels have the counts of fa_lib.models.sizes (thesis 5.1-5.5)
    assert spec.thesis_parameters() / 1e6 == pytest.approx(millions, abs=0.01)


def test_specs_build_at_the_profile_scale(chapter):
    setup = chapter[0].setup
    x = torch.rand(2, 3, setup.input_size, setup.input_size)
    for spec in [*ex.BLOCK_SPECS.values(), ex.OURS_REDUCED, ex.BOTTLENECK_WIDER_REAL,
                 ex.NetSpec(hourglass="improved"), ex.NetSpec(outputs=7), ex.NetSpec(stacks=2)]:
        net = spec.build(setup)
        out = net(x)
        assert len(out) == spec.stacks
        assert out[-1].shape == (2, spec.outputs, setup.heatmap_size, setup.heatmap_size), spec.describe()
    # binary and real twins have the same size; the reduced block is smaller
    assert ex.OURS.build(setup).config["binary"] and not ex.OURS_REAL.build(setup).config["binary"]
    from fa_lib.models.fan import parameter_count

    assert parameter_count(ex.OURS_REDUCED.build(setup)) < parameter_count(ex.OURS.build(setup))


def test_compare_hand_cases():
    # a clear gap with the thesis's sign holds, with the opposite sign is reversed, within noise not resolved
    c = ex.compare("a", [50, 52], "b", [40, 42], paper_gap=5)
    assert c.outcome == "holds" and c.gap == pytest.approx(10)
    assert c.standard_error == pytest.approx(math.sqrt(2 / 2 + 2 / 2))
    assert ex.compare("a", [40, 42], "b", [50, 52], paper_gap=5).outcome == "reversed"
    assert ex.compare("a", [50, 54], "b", [49, 53], paper_gap=5).outcome == "not resolved"
    # single runs: resolved only with a noise estimate
    assert ex.compare("a", [50], "b", [40], paper_gap=5).outcome == "not resolved"
    assert ex.compare("a", [50], "b", [40], paper_gap=5, noise=1.0).outcome == "holds"
    assert "no estimate" in ex.compare("a", [50], "b", [40], paper_gap=5).sentence()
    assert ex.mean_std([1, 3]) == (2.0, pytest.approx(math.sqrt(2)), 2)


def test_tables_write_the_thesis_labels(chapter):
    ch, root = chapter
    result = ex.table_5_1(ch)
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
    assert len(prov["networks"]["Bottleneck (real)"]) == len(ch.seeds)
    assert result.comparisons and result.comparisons[0].better == "Bottleneck (real)"
    # the same run is shared, not retrained, by the next table
    n = len(ch.trained())
    ex.table_5_4(ch)
    assert len(ch.trained()) == n + 1  # only the reduced block is new


def test_nme_tables_and_parsing(chapter):
    ch, root = chapter
    t13 = ex.table_5_13(ch)
    ours = t13.table[t13.table["row"] == "Ours (binary)"].set_index("column")
    assert {"[0-30]", "[30-60]", "[60-90]", "mean"} <= set(ours.index)
    assert ours.loc["mean", "paper"] == pytest.approx(3.26)
    assert np.isfinite(ours.loc["mean", "reproduced"])
    t12 = ex.table_5_12(ch)
    assert np.isfinite(t12.table.set_index(["row", "column"]).loc[("Ours (binary)", "AFLW-PIFA all 34"),
                                                                  "reproduced"])
    t16 = ex.table_5_16(ch)
    cells = t16.table.set_index(["row", "column"])
    for row in ("Real, bottleneck", "Binary, bottleneck", "Binary, Ours"):
        value = cells.loc[(row, "pixel acc."), "reproduced"]
        assert 0.0 <= value <= 100.0
    run = ch.run(ex.OURS_REDUCED, ex.PARSING)
    assert run.net.outputs == 7 and run.parsing_pred.shape[1:] == (ch.setup.parsing_output_size,) * 2


def test_stagewise_stacks_start_from_the_smaller_network(chapter):
    ch, root = chapter
    one = ch.run(ex.OURS)
    two = ch.run(ex.NetSpec(stacks=2))
    assert "stage-wise" in two.note
    # 5.7.2: the 1-stack run, then the new stack alone, then everything jointly (one step each here)
    phases = [h.get("phase") for h in two.history]
    assert phases[-2:] == ["stage2", "joint"]
    assert two.steps == one.steps + 2
    assert two.history[:len(one.history)] == one.history


def test_figures_and_explorer(chapter):
    ch, root = chapter
    signs, layer, distinct = ex.binary_filters(ch.run(ex.OURS))
    assert set(np.unique(signs)) <= {-1.0, 1.0} and 1 <= distinct <= 512
    ex.fig_5_2(ch)
    ex.fig_5_10(ch)
    assert (root / "figures" / "fig_5_2.png").exists() and (root / "figures" / "fig_5_10.json").exists()
    frames, labels, df = ex.binarization_explorer_frames(ch)
    assert len(frames) == len(labels) == len(df) and "hierarchical, binary" in set(df["network"])
    assert all(label.startswith(network) for label, network in zip(labels, df["network"]))
    claims = ex.claims_table([ex.table_5_1(ch)])
    assert list(claims["outcome"].unique()[:1])[0] in {"holds", "reversed", "not resolved"}
    assert "orderings" in ex.describe_claims(claims)


def test_conv_macs_and_interleaved_timing_hand_cases():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    assert ex.conv_macs(conv, 8) == {"": 8 * 8 * 4 * 3 * 9}  # output pixels x Cout x Cin x taps
    calls = []
    best = ex.interleaved_min_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b"] * 3  # one warm-up call each, then every round calls every candidate in turn
    assert set(best) == {"a", "b"} and all(0 <= v < 1 for v in best.values())


def test_packed_inference_of_the_trained_networks(chapter):
    ch, root = chapter
    ch.run(ex.NetSpec(stacks=2))  # a trained stack is included
    result = ex.packed_inference_table(ch)
    binary = {m["label"]: m for m in result.measurements.values() if m["binary"]}
    assert {f"{name}, binary" for name in ex.BLOCK_SPECS} | {"hierarchical, binary, improved HG",
                                                             "hierarchical, binary, 2 stacks"} == set(binary)
    for label, m in binary.items():
        # the packed module gives the training-time forward's heatmaps and exactly the same landmarks when
        # that forward runs in the packed module's real-layer layout (channels-last)
        assert m["relative_diff_channels_last"] <= 1e-4, label
        assert m["differing_landmarks_channels_last"] == 0 and m["landmarks"] == len(ch.data.test) * 68, label
        # with NCHW real layers, the training forward itself, bit for bit
        assert m["relative_diff_nchw_real_layers"] == 0.0 and m["differing_landmarks_nchw_real_layers"] == 0, label
        # the default against the NCHW forward too, unless the float forward itself changes with the layout
        if m["float_layout_differing_landmarks"] == 0:
            assert m["relative_diff"] <= 1e-4, label
            assert m["differing_landmarks"] == 0, label
            assert m["nme_float"] == pytest.approx(m["nme_packed"], abs=1e-9), label
        assert m["round_trip_exact"], label
        # every binary convolution runs packed; the real stem conv and 1x1 heads do not
        assert m["binary_convs"] > 0 and m["binary_convs_left_float"] == 0, label
        assert 0 < m["packed_macs"] < m["conv_macs"], label
        assert set(m["timing"]) == {1, 2}
        for t in (1, 2):
            timing = m["timing"][t]
            assert timing["float_ms"] > 0 and timing["packed_ms"] > 0
            assert timing["speedup"] == pytest.approx(timing["float_ms"] / timing["packed_ms"])
    # the float side is the chapter's own trained model: same NME as its evaluation
    assert binary["hierarchical, binary"]["nme_float"] == pytest.approx(ch.run(ex.OURS).mean_nme, rel=1e-6)
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
    assert (root / "figures" / "fig_5_packed_inference.png").exists()
    assert f"**{len(binary)} of {len(binary)}**" in ex.describe_packed_inference(result)


def test_explorer_shows_the_measured_speed(chapter):
    ch, root = chapter
    result = ch.packed_inference or ex.packed_inference_table(ch)
    frames, labels, df = ex.binarization_explorer_frames(ch, packed=result)
    rows = df.set_index("network")
    for label in labels:
        network = label.split(":")[0]
        spec = next(r.net for lab, r in ex.explorer_networks(ch) if lab == network)
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
    t = ex.kernel_targets_table(bench).set_index("measurement")
    assert len(t) == 5 and set(t["threads"]) == {1}
    worst = t.iloc[4]
    assert "64->64 @64x64" in t.index[4] and worst["speed-up"] == 4.5 and not worst["met"]
    first = t.iloc[0]
    assert first["isa"] == "amx" and first["speed-up"] == 18.5 and first["met"]  # with packing, 1 thread
    assert t.iloc[1]["speed-up"] == 14.0 and not t.iloc[1]["met"]
    assert t.iloc[2]["speed-up"] == 6.0 and not t.iloc[2]["met"]
    assert t.iloc[3]["isa"] == "avx2 (torch on AVX2 too)" and t.iloc[3]["met"]  # the emulated AVX2-only rows
    text = ex.describe_kernel_targets(ex.kernel_targets_table(bench))
    assert text.startswith("**2 of 5**") and "target 15x, not met" in text
    # without the emulation, the plain avx2 rows (torch on AVX-512) stand in
    plain = ex.kernel_targets_table(bench[bench["isa"] != "avx2 (torch on AVX2 too)"])
    assert plain.iloc[3]["isa"] == "avx2" and not plain.iloc[3]["met"]
    assert ex.describe_kernel_targets(pd.DataFrame()).startswith("The kernels' benchmark has no rows")
