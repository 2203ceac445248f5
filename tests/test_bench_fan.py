"""Exact fast inference (fa_lib.inference) and the FAN benchmark against the official module."""
import argparse
import csv

import pytest
import torch

from fa_lib.inference import CompiledFAN, FastFAN, OneDnnConv2d, compiler_unavailable_reason, optimize_for_inference
from fa_lib.models import FAN, FanFull, ResNetDepth


def _trained_like(model, seed=0):
    """BN statistics like a trained network's, with negative and zero scales (the clamp fold's
    three cases)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            weight = torch.rand(n, generator=g) * 2 - 0.5
            weight[0] = 0.0
            m.weight.data.copy_(weight)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("config", [
    dict(num_modules=2, width=16, stem_channels=(8, 16)),
    dict(num_modules=1, width=16, stem_channels=(8, 16), in_channels=71, pooling="max"),
    dict(num_modules=1, width=16, stem_channels=(8, 16), block="bottleneck"),   # not fused: kept
    dict(num_modules=1, width=16, stem_channels=(8, 16), hourglass="improved"),
])
def test_fast_fan_equals_fan(config):
    torch.manual_seed(0)
    model = _trained_like(FAN(**config))
    fast = optimize_for_inference(model)
    assert isinstance(fast, FastFAN)
    x = torch.rand(2, config.get("in_channels", 3), 128, 128)
    with torch.no_grad():
        expected = model(x)
    got = fast(x)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert b.is_contiguous() and (a - b).abs().max() < 1e-4
    # the original model is untouched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("kernel,stride,relu", [(1, 1, False), (1, 1, True), (7, 2, True), (3, 1, False)])
def test_onednn_conv_equals_conv_then_relu(kernel, stride, relu):
    conv = torch.nn.Conv2d(12, 20, kernel, stride=stride, padding=kernel // 2)
    fused = OneDnnConv2d(conv, relu=relu)
    x = torch.randn(2, 12, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(x)
        expected = torch.relu(expected) if relu else expected
        got = fused(x)
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-5
    assert torch.is_grad_enabled() and torch.equal(fused(x), expected)  # with autograd on: F.conv2d itself
    with pytest.raises(ValueError, match="zero padding"):
        OneDnnConv2d(torch.nn.Conv2d(3, 3, 3, padding="same"))


def test_fast_fan_full_equals_fan_full():
    torch.manual_seed(0)
    model = _trained_like(FanFull(FAN(num_modules=1, width=16, stem_channels=(8, 16)),
                                  ResNetDepth(71, 68, layers=(1, 1, 1, 1))))
    fast = optimize_for_inference(model)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        (h1, p1), (h2, p2) = model(x), fast(x)
    assert (h1[-1] - h2[-1]).abs().max() < 1e-4
    assert (p1 - p2).abs().max() < 1e-3


# Small enough to compile in seconds: the compiled graph's size, not the width, sets the time.
TINY = dict(num_modules=2, width=16, stem_channels=(8, 16), hg_depth=2, num_landmarks=5)


def _compiler_or_skip():
    reason = compiler_unavailable_reason()
    if reason is not None:  # e.g. no g++/clang++: inductor cannot build its C++ kernels
        pytest.skip(f"torch.compile unavailable here: {reason}")


def test_compiled_fan_equals_fan():
    _compiler_or_skip()
    torch.manual_seed(0)
    model = _trained_like(FAN(**TINY))
    compiled = optimize_for_inference(model, compile=True)
    assert isinstance(compiled, CompiledFAN)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    got = compiled(x)
    assert compiled.compiled, compiled.fallback_reason  # really compiled, no silent fallback
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert b.is_contiguous() and (a - b).abs().max() < 1e-4
    with pytest.raises(ValueError):
        compiled(torch.rand(1, 4, 64, 64))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched


def test_compiled_fan_falls_back_to_fast_fan(monkeypatch):
    import fa_lib.inference as inference

    torch.manual_seed(0)
    model = _trained_like(FAN(**TINY))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    # no compiler found up front: a warning, then the eager FastFAN
    monkeypatch.setattr(inference, "compiler_unavailable_reason", lambda: "no C++ compiler (test)")
    with pytest.warns(UserWarning, match="no C.. compiler"):
        compiled = optimize_for_inference(model, compile=True)
    assert not compiled.compiled and "test" in compiled.fallback_reason
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(expected, compiled(x)))
    # inductor failing while compiling (e.g. a broken compiler): the same fallback, at the call
    monkeypatch.setattr(inference, "compiler_unavailable_reason", lambda: None)
    compiled = CompiledFAN(model)
    assert compiled.compiled

    def broken(_):
        from torch._dynamo.exc import BackendCompilerFailed

        raise BackendCompilerFailed("inductor", RuntimeError("C++ compile error (test)"), None)

    compiled.__dict__["_compiled"] = broken
    with pytest.warns(UserWarning, match="inductor failed"):
        got = compiled(x)
    assert not compiled.compiled and "C++ compile error (test)" in compiled.fallback_reason
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(expected, got))


def test_fan_full_compile_option_without_compiler(monkeypatch):
    """``optimize_for_inference(FanFull, compile=True)`` puts a CompiledFAN inside (here in its
    no-compiler fallback, so the test stays fast; the compiled path is tested above)."""
    import fa_lib.inference as inference

    monkeypatch.setattr(inference, "compiler_unavailable_reason", lambda: "no C++ compiler (test)")
    torch.manual_seed(0)
    model = _trained_like(FanFull(FAN(**{**TINY, "num_landmarks": 68}),
                                  ResNetDepth(71, 68, layers=(1, 1, 1, 1))))
    with pytest.warns(UserWarning):
        fast = optimize_for_inference(model, compile=True)
    assert isinstance(fast.fan, CompiledFAN)
    x = torch.rand(1, 3, 256, 256)  # the depth ResNet's pooling needs the full crop
    with torch.no_grad():
        (h1, p1), (h2, p2) = model(x), fast(x)
    assert (h1[-1] - h2[-1]).abs().max() < 1e-4 and (p1 - p2).abs().max() < 1e-3


def _official_or_skip():
    from fa_lib.bench_fan import official_fan_class

    try:
        return official_fan_class()
    except ImportError as err:
        pytest.skip(str(err))


def test_bench_main_writes_csv(tmp_path, monkeypatch, capsys):
    from fa_lib import bench_fan

    _official_or_skip()
    real = bench_fan.benchmark_fan
    monkeypatch.setattr(bench_fan, "benchmark_fan",
                        lambda **kw: real(**{**kw, "stacks": 1, "repeats": 1, "input_size": 64}))
    out = tmp_path / "bench_fan.csv"
    assert bench_fan.bench_main(argparse.Namespace(quick=True, out=str(out), threads=None)) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(bench_fan.CSV_COLUMNS)
    models = ["FAN-1 fa_lib FastFAN", "FAN-1 fa_lib CompiledFAN (torch.compile)",
              "FAN-1 fa_lib FAN (eager)"]
    if compiler_unavailable_reason() is not None:  # the bench says why it leaves the row out
        models.remove("FAN-1 fa_lib CompiledFAN (torch.compile)")
        assert "skipping the torch.compile candidate" in capsys.readouterr().out
    assert [r["model"] for r in rows] == models
    for row in rows:  # every reported mode: same heatmaps as the official module, same weights
        assert float(row["max_abs_diff"]) < bench_fan.TOLERANCE
        assert float(row["official_ms"]) > 0 and float(row["ours_ms"]) > 0
        assert float(row["speedup"]) > 0 and float(row["speedup_median"]) > 0
        assert float(row["setup_s"]) >= 0


def test_bench_refuses_unequal_outputs(monkeypatch):
    """A candidate that computes something else gets no speed-up: the benchmark raises."""
    from fa_lib import bench_fan

    official = _official_or_skip()

    def wrong(model, compile=False):
        fast = optimize_for_inference(model)
        return lambda x: [h + 1e-3 for h in fast(x)]

    monkeypatch.setattr(bench_fan, "optimize_for_inference", wrong)
    with pytest.raises(AssertionError, match="fa_lib FastFAN"):
        bench_fan.benchmark_fan(stacks=1, repeats=1, input_size=64, compile=False,
                                official_class=official)


def test_cli_bench_fan_no_compile(monkeypatch):
    from fa_lib import bench_fan
    from fa_lib.cli import build_parser

    seen = {}
    monkeypatch.setattr(bench_fan, "bench_main", lambda args: seen.setdefault("args", args) and 0)
    args = build_parser().parse_args(["bench", "fan", "--no-compile", "--quick", "--out", "x.csv"])
    assert args.no_compile and args.quick and args.out == "x.csv"
    assert not build_parser().parse_args(["bench", "fan"]).no_compile
