"""Exact fast inference (fa_lib.inference) and the FAN benchmark against the official module."""
import argparse
import csv

import pytest
import torch

from fa_lib.inference import FastFAN, optimize_for_inference
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


def _official_or_skip():
    from fa_lib.bench_fan import official_fan_class

    try:
        return official_fan_class()
    except ImportError as err:
        pytest.skip(str(err))


def test_bench_main_writes_csv(tmp_path, monkeypatch):
    from fa_lib import bench_fan

    _official_or_skip()
    real = bench_fan.benchmark_fan
    monkeypatch.setattr(bench_fan, "benchmark_fan",
                        lambda **kw: real(**{**kw, "stacks": 1, "repeats": 1, "input_size": 128}))
    out = tmp_path / "bench_fan.csv"
    assert bench_fan.bench_main(argparse.Namespace(quick=True, out=str(out), threads=None)) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(bench_fan.CSV_COLUMNS)
    assert [r["model"] for r in rows] == ["FAN-1 fa_lib FastFAN", "FAN-1 fa_lib FAN (eager)"]
    for row in rows:  # same heatmaps as the official module, loaded with the same weights
        assert float(row["max_abs_diff"]) < 1e-4
        assert float(row["official_ms"]) > 0 and float(row["ours_ms"]) > 0
