"""Bit-packed binary convolution kernels (fa_lib.kernels.xnor) against a torch reference of the binary
layer rule (thesis eq. 5.1-5.2): sign(v) = +1 iff v >= 0, zero padding after the sign, output
alpha * integer dot product.  Every ISA this CPU supports is exercised."""
import math
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from fa_lib.kernels import xnor
from fa_lib.models.fan import binary_hourglass_net

ISAS = xnor.available_isas()

pytestmark = pytest.mark.usefixtures("amx_tile_kernel_everywhere")


def sign(v: torch.Tensor) -> torch.Tensor:
    """The project's sign: a comparison against 0 (so -0.0 -> +1)."""
    return torch.where(v >= 0, 1.0, -1.0)


def reference_integer_conv(x_signs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Integer dot products of +-1 activations and sign(W), zero padding applied after the sign."""
    k = weight.shape[-1]
    return F.conv2d(x_signs, sign(weight), padding=k // 2)  # exact: |sums| < 2**24


def random_bn(channels: int, gen: torch.Generator) -> torch.nn.BatchNorm2d:
    """An eval-mode BN with negative, zero and positive gammas."""
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        gamma = torch.randn(channels, generator=gen)
        gamma[torch.rand(channels, generator=gen) < 0.15] = 0.0
        bn.weight.copy_(gamma)
        bn.bias.copy_(torch.randn(channels, generator=gen))
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.1)
    return bn.eval()


def test_hand_computed_3x3_with_border_correction():
    # One channel, all activations +1 (x = 0 -> +1), weights all +1: the dot product counts the taps
    # inside the image: 4 at a corner, 6 on an edge, 9 inside (zero padding contributes 0).
    x = torch.zeros(1, 1, 3, 3)
    w = torch.ones(1, 1, 3, 3)
    expected = torch.tensor([[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])
    for isa in ISAS:
        out = xnor.binary_conv(xnor.pack_activations(x, isa=isa), xnor.pack_weights(w), scale=False, isa=isa)
        assert torch.equal(out[0, 0], expected), isa


def test_negative_zero_is_plus_one_and_weight_alpha():
    x = torch.tensor([-0.0, 0.0, -1e-30, 2.0]).view(1, 4, 1, 1)
    w = torch.tensor([1.0, 1.0, 1.0, -3.0]).view(1, 4, 1, 1)  # sign -> +1 +1 +1 -1, alpha = 1.5
    for isa in ISAS:
        packed = xnor.pack_activations(x, pad=0, isa=isa)
        assert packed.words.item() == 0b0100  # only -1e-30 is negative
        pw = xnor.pack_weights(w)
        assert pw.alpha.item() == pytest.approx(1.5)
        out = xnor.binary_conv(packed, pw, isa=isa)
        # (+1)(+1) + (+1)(+1) + (-1)(+1) + (+1)(-1) = 0
        assert out.item() == 0.0


def test_packed_words_match_numpy_reference_including_padding():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 130, 3, 5, generator=gen)
    neg = (x < 0).permute(0, 2, 3, 1).numpy()  # N H W C
    expected = np.zeros((2, 5, 7, 3), dtype=np.uint64)
    for c in range(130):
        expected[:, 1:-1, 1:-1, c // 64] |= neg[..., c].astype(np.uint64) << np.uint64(c % 64)
    for isa in ISAS:
        words = xnor.pack_activations(x, pad=1, isa=isa).words.numpy().view(np.uint64)
        np.testing.assert_array_equal(words, expected)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2), cin=st.integers(1, 150), cout=st.integers(1, 70), h=st.integers(1, 7),
    w=st.integers(1, 9), k=st.sampled_from([1, 3]), isa=st.sampled_from(ISAS),
    offset=st.integers(0, 5), seed=st.integers(0, 2**31 - 1),
)
def test_conv_matches_reference_bit_for_bit(n, cin, cout, h, w, k, isa, offset, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, k, k, generator=gen)
    bn = random_bn(cin, gen)
    with torch.no_grad():
        x_signs = sign(bn(x))
    lo, hi = xnor.sign_thresholds(bn, cin)
    packed = xnor.pack_activations(x, lo, hi, pad=1, isa=isa)
    pw = xnor.pack_weights(weight)
    ref = reference_integer_conv(x_signs, weight)
    # Integer result, written into a channel slice of a wider tensor (the block's free concatenation).
    wide = torch.full((n, offset + cout + 3, h, w), 7.0).contiguous(memory_format=torch.channels_last)
    xnor.binary_conv(packed, pw, out=wide, out_channel_offset=offset, scale=False, isa=isa)
    assert torch.equal(wide[:, offset:offset + cout], ref)
    assert bool((wide[:, :offset] == 7).all()) and bool((wide[:, offset + cout:] == 7).all())
    # Scaled result equals alpha * integer (not alpha folded into the weights).
    scaled = xnor.binary_conv(packed, pw, isa=isa)
    assert torch.equal(scaled, pw.alpha.view(1, -1, 1, 1) * ref)


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), channels_last=st.booleans())
def test_thresholds_reproduce_batchnorm_sign_exactly(channels, seed, channels_last):
    gen = torch.Generator().manual_seed(seed)
    bn = random_bn(channels, gen)
    lo, hi = xnor.sign_thresholds(bn, channels)
    # Random values plus the thresholds themselves and their float neighbours (the hard cases).
    finite_lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    finite_hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
    edges = [finite_lo, finite_hi]
    for e in (finite_lo, finite_hi):
        edges += [torch.nextafter(e, torch.tensor(float("inf"))), torch.nextafter(e, torch.tensor(-float("inf")))]
    x = torch.randn(2, channels, 6, 6, generator=gen) * 3
    x[0, :, 0, :] = torch.stack(edges, dim=1)  # 6 values per channel
    x[1, :, 0, 0] = -0.0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = bn(x) >= 0
    folded = (x >= lo.view(1, -1, 1, 1)) & (x <= hi.view(1, -1, 1, 1))
    assert torch.equal(folded, expected)


def test_threads_and_isas_agree():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 96, 9, 11, generator=gen)
    pw = xnor.pack_weights(torch.randn(40, 96, 3, 3, generator=gen))
    outs = [xnor.binary_conv(xnor.pack_activations(x, isa=isa, threads=t), pw, isa=isa, threads=t)
            for isa in ISAS for t in (1, 2)]
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_isa_selection_and_errors(monkeypatch):
    assert ISAS[-1] == "scalar"
    monkeypatch.setenv(xnor.ISA_ENV_VAR, "scalar")
    assert xnor.resolve_isa() == "scalar"
    monkeypatch.setenv(xnor.ISA_ENV_VAR, "neon")
    with pytest.raises(ValueError, match="FA_LIB_XNOR_ISA"):
        xnor.resolve_isa()
    monkeypatch.delenv(xnor.ISA_ENV_VAR)
    assert xnor.resolve_isa() == ISAS[0]
    for isa in set(xnor.ISA_CODES) - set(ISAS):  # only on CPUs lacking a path
        with pytest.raises(RuntimeError, match="supports only"):
            xnor.resolve_isa(isa)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 8, 4, 4)
    pw = xnor.pack_weights(torch.randn(4, 6, 3, 3))
    with pytest.raises(ValueError, match="channels"):
        xnor.binary_conv(xnor.pack_activations(x), pw)
    pw8 = xnor.pack_weights(torch.randn(4, 8, 3, 3))
    with pytest.raises(ValueError, match="pad"):
        xnor.binary_conv(xnor.pack_activations(x, pad=0), pw8)
    with pytest.raises(ValueError, match="do not fit"):
        out = torch.empty(1, 5, 4, 4).contiguous(memory_format=torch.channels_last)
        xnor.binary_conv(xnor.pack_activations(x), pw8, out=out, out_channel_offset=2)
    with pytest.raises(ValueError, match="channels-last"):
        xnor.binary_conv(xnor.pack_activations(x), pw8, out=torch.empty(1, 4, 4, 4))
    with pytest.raises(ValueError, match="odd k"):
        xnor.pack_weights(torch.randn(4, 8, 2, 2))
    with pytest.raises(ValueError, match="thresholds"):
        xnor.pack_activations(x, torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="eval mode"):
        xnor.sign_thresholds(torch.nn.BatchNorm2d(8), 8)


@pytest.mark.slow
def test_c_selftest_under_address_sanitizer(tmp_path):
    """The standalone C harness (fa_lib/kernels/xnor_selftest.c) built with ASan + UBSan: every supported
    ISA against a naive reference with exact-size buffers (what `make sanitize` runs)."""
    import shutil
    import subprocess
    from pathlib import Path

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = Path(xnor.__file__).parent
    exe = tmp_path / "xnor_selftest_asan"
    build = subprocess.run([cc, "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fopenmp",
                            str(src / "xnor.c"), str(src / "xnor_amx.c"), str(src / "xnor_selftest.c"), "-lm",
                            "-o", str(exe)],
                           capture_output=True, text=True)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"compiler lacks AddressSanitizer: {build.stderr[-200:]}")
    assert build.returncode == 0, build.stderr
    env = {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all cases passed" in run.stdout
    for isa in xnor.available_isas():  # every path the Python side can pick was exercised, not skipped
        assert f"{isa:<7} ok" in run.stdout, run.stdout


def test_bench_schema_and_figure(tmp_path):
    from fa_lib.kernels import bench

    out = tmp_path / "bench.csv"
    df = bench.run_bench(out, threads=(1,), isas=["scalar"], resolutions=[4], include_block=False,
                         include_network=False, repeats=1)
    assert list(df.columns) == bench.COLUMNS and len(df) == len(bench.CONV_SHAPES)
    assert out.exists() and (df["speedup"] > 0).all()
    assert (df["speedup"] == df["torch_ms"] / df["binary_ms"]).all()
    fig = bench.bench_figure(df, threads=1)
    assert len(fig.axes) == 1
    if "avx2" in ISAS:  # the AVX2-only emulation: a child process, its own rows, the same schema
        both = bench.run_bench(None, threads=(1,), isas=["scalar"], resolutions=[4], include_block=False,
                               include_network=False, repeats=1, emulate_avx2_only=True)
        emulated = both[both["isa"] == bench.AVX2_ONLY_LABEL]
        assert len(emulated) == len(bench.CONV_SHAPES) and (emulated["torch_ms"] > 0).all()
    with pytest.raises(ValueError, match="timer"):
        bench.run_bench(None, threads=(1, 2), timer="cpu")


def test_bench_reports_the_network_model_size():
    from fa_lib.kernels import bench

    size = bench.network_model_size()
    # 6.1M binary weights at 1 bit, ~0.1M real parameters at 4 bytes: about 20x under the float32 state_dict
    assert size["binary_params"] > 50 * size["real_params"]
    assert size["binary_bits_bytes"] == pytest.approx(size["binary_params"] / 8, rel=0.01)
    assert size["ratio_vs_float32"] == size["float32_state_dict_bytes"] / size["packed_file_bytes"]
    assert 15 < size["ratio_vs_float32"] < 32


@pytest.mark.skipif("amx" not in ISAS, reason="this CPU (or kernel) has no AMX-INT8 tiles")
def test_amx_small_maps_route_to_the_popcount_kernel_with_identical_results():
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(40, 70, 3, 3, generator=gen)
    pw = xnor.pack_weights(weight)
    assert pw.amx_weights() is pw.amx_weights()  # expanded once, cached
    assert pw.amx_weights().numel() == 2 * 9 * 2 * 2 * 1024  # [CB=2][k*k][CW=2][2][16x64]
    for size, tiles in ((4, False), (6, True), (9, True)):  # 16 pixels < 32 <= 36, 81
        x = torch.randn(1, 70, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
        act = xnor.pack_activations(x, pad=1)
        expected = reference_integer_conv(sign(x), weight)
        previous = xnor.set_amx_min_pixels(32)
        assert xnor.amx_min_pixels() == 32
        try:
            got = xnor.binary_conv(act, pw, scale=False, isa="amx")
        finally:
            xnor.set_amx_min_pixels(previous)
        assert torch.equal(got, expected), (size, tiles)


def test_amx_peak_rate_is_measured_or_absent():
    rate = xnor.amx_peak_gmacs(steps=2000, repeats=1)
    if "amx" in ISAS:
        assert rate is not None and rate > 50  # any real tile unit does far more than 50 GMAC/s
    else:
        assert rate is None


def test_bench_rows_name_their_machine_and_a_file_keeps_each_machine_kinds_latest_run(tmp_path):
    from fa_lib.kernels import bench

    kind = bench.machine_kind()
    assert kind in ("AMX (Intel)", "AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4)", "AVX-512 without VPOPCNTDQ",
                    "AVX2 only", "other")
    out = tmp_path / "bench.csv"
    # a file written before rows named their machine, and a row of another kind
    legacy = pd.DataFrame([{"layer": layer, "isa": "amx", "threads": 1, "torch_ms": 2.0, "binary_ms": 1.0,
                            "binary_with_pack_ms": 1.0, "speedup": 2.0, "speedup_with_pack": 2.0}
                           for layer in ("old", bench.NETWORK_LAYER)])
    legacy.to_csv(out, index=False)
    first = bench.run_bench(out, threads=(1,), isas=["scalar"], resolutions=[4], include_block=False,
                            include_network=False, repeats=1)
    assert (first["cpu"] == bench.cpu_model()).all() and (first["machine_kind"] == kind).all()
    merged = pd.read_csv(out)
    assert list(merged.columns) == bench.COLUMNS
    old = merged[merged["layer"] == "old"]
    if kind == bench.LEGACY_MACHINE["machine_kind"]:
        assert old.empty  # this machine's kind replaces its own older rows
    else:
        assert old["machine_kind"].tolist() == [bench.LEGACY_MACHINE["machine_kind"]]
        # its network row predates the fast real layers: it was the exact packing, and is labelled so
        assert bench.NETWORK_EXACT_LAYER in set(merged["layer"]) and bench.NETWORK_LAYER not in set(merged["layer"])
    bench.run_bench(out, threads=(1,), isas=["scalar"], resolutions=[4], include_block=False, include_network=False,
                    repeats=1)
    again = pd.read_csv(out)
    assert (again["machine_kind"] == kind).sum() == len(bench.CONV_SHAPES)  # replaced, not appended


def test_network_bench_compares_with_the_fastest_float_network():
    from fa_lib.kernels import bench

    binary = bench._randomize_bn(binary_hourglass_net(stacks=1, width=32, hg_depth=1, stem_channels=(16, 32)))
    real = binary_hourglass_net(stacks=1, width=32, hg_depth=1, stem_channels=(16, 32), binary=False).eval()
    fast = bench.fast_float_network(real, compile=False)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(fast(x)[-1], real(x)[-1], atol=1e-4)
    row = bench.bench_module("net", binary, real, x, "scalar", 1, 1, fast_float=fast)
    assert row["torch_fast_ms"] > 0 and row["speedup_vs_fast"] == row["torch_fast_ms"] / row["binary_with_pack_ms"]
    fast_row = bench.bench_module("net", binary, real, x, "scalar", 1, 1, real_layers="fast")
    assert fast_row["binary_ms"] > 0 and math.isnan(fast_row["torch_fast_ms"])


def test_conv_bench_times_the_fused_packing_of_the_next_layers_input():
    from fa_lib.kernels import bench

    row = bench.bench_conv(64, 32, 8, xnor.available_isas()[0], 1, 1)
    assert row["binary_fused_pack_ms"] > 0
    assert row["speedup_fused_pack"] == row["torch_ms"] / row["binary_fused_pack_ms"]


def test_network_profile_adds_up_to_the_whole_run():
    from fa_lib.kernels import bench

    profile = bench.profile_packed_network(isa="scalar" if "scalar" in ISAS else None, repeats=1)
    assert (profile["real_layers"] == "fast").all()
    exact = bench.profile_packed_network(repeats=1, real_layers="channels_last")
    assert "real batch norm (outside blocks)" in set(exact["part"])  # folded away in the fast profile
    assert "real batch norm (outside blocks)" not in set(profile["part"])
    parts = set(profile["part"])
    assert {"binary hierarchical blocks (packed)", "real conv 7x7 (7x7 stem)",
            "pooling, upsampling, adds, layout (the rest)"} <= parts
    assert profile["share"].sum() == pytest.approx(1.0) and (profile["ms"] > 0).all()
    assert (profile["machine_kind"] == bench.machine_kind()).all()


def test_network_rows_can_be_measured_in_several_processes():
    """--network-processes: each network row is the median-speed-up process's (fresh child processes)."""
    from fa_lib.kernels import bench

    isa = xnor.available_isas()[0]
    df, spread = bench.network_rows_in_processes([1], [isa], network_repeats=1, timer="wall", processes=2,
                                                 compile_baseline=False)
    assert list(df.columns) == bench.COLUMNS
    assert set(df["layer"]) == {bench.NETWORK_LAYER, bench.NETWORK_EXACT_LAYER} and len(df) == 2
    for _, row in df.iterrows():
        speedups = spread[f"{row['layer']} | {isa} | 1"]
        assert len(speedups) == 2 and round(row["speedup"], 2) == min(speedups)  # median of two: the lower
        assert row["torch_fast_ms"] > 0


@pytest.mark.skipif("avx2" not in ISAS, reason="no AVX2 on this CPU")
@settings(max_examples=15, deadline=None)
@given(cin=st.integers(1, 200), cout=st.integers(1, 70), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 2**31 - 1))
def test_avx2_kernels_with_and_without_scalar_popcount_are_exact(cin, cout, h, w, seed):
    """The AVX2 path's two kernels (look-up only; 8 channels of 32 by scalar POPCNT, AMD's default) give the
    scalar path's integers."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cin, h, w, generator=gen)
    weights = xnor.pack_weights(torch.randn(cout, cin, 3, 3, generator=gen))
    act = xnor.pack_activations(x, None, None, pad=1, isa="scalar")
    expected = xnor.binary_conv(act, weights, scale=False, isa="scalar")
    try:
        for mixed in (False, True):
            xnor.set_avx2_mixed(mixed)
            assert torch.equal(xnor.binary_conv(act, weights, scale=False, isa="avx2"), expected), mixed
    finally:
        xnor.set_avx2_mixed(None)


def test_cross_block_packing_is_measured_side_by_side_and_described(tmp_path):
    """The benchmark's on-vs-off rows for cross_block_packing (a block chain and the whole network), and the
    chapter-5 page's table and sentence from them, whichever way the measurement goes."""
    from fa_lib.experiments.ch5 import kernels as ch5_kernels, narrative
    from fa_lib.kernels import bench

    df = bench.bench_cross_block(isa="scalar", calls=2, network_calls=1)
    assert list(df["case"]) == ["4 hierarchical blocks 256->256 @64x64", bench.NETWORK_LAYER]
    assert (df["off_ms"] > 0).all() and (df["on_ms"] > 0).all()
    assert df["off_over_on"].tolist() == pytest.approx((df["off_ms"] / df["on_ms"]).tolist())
    for ratios, verdict in (([1.2, 1.1], "**pays**"), ([0.8, 0.9], "**does not pay**"), ([1.2, 0.9], "some cases only")):
        df["off_over_on"] = ratios
        path = tmp_path / "cross.csv"
        df.to_csv(path, index=False)
        table = ch5_kernels.cross_block_table(path)
        assert table.shape == (2, 3) and "scalar" in table.attrs["machine"]
        assert verdict in narrative.describe_cross_block(table)
    assert ch5_kernels.cross_block_table(tmp_path / "missing.csv") is None
    assert "has not been measured" in narrative.describe_cross_block(None)
