"""ONNX export of FAN with a dynamic batch, checked against onnxruntime (fa_lib.export)."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from fa_lib.export import check_onnx, export_onnx, run_onnx  # noqa: E402
from fa_lib.models import FAN  # noqa: E402


def test_export_matches_pytorch_for_several_batch_sizes(tmp_path):
    torch.manual_seed(0)
    model = FAN(num_modules=1, width=16, stem_channels=(8, 16)).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    path = export_onnx(model, tmp_path / "fan.onnx")
    assert path.is_file() and not list(tmp_path.glob(".*.tmp*"))
    worst = check_onnx(model, path, batch_sizes=(1, 3))
    assert worst < 1e-4
    out = run_onnx(path, np.zeros((2, 3, 256, 256), np.float32))
    assert len(out) == 1 and out[0].shape == (2, 68, 64, 64)


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="FAN"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="multiple of 64"):
        export_onnx(FAN(num_modules=1, width=16, stem_channels=(8, 16)), tmp_path / "x.onnx", input_size=100)
    with pytest.raises(FileNotFoundError):
        run_onnx(tmp_path / "missing.onnx", np.zeros((1, 3, 256, 256), np.float32))
