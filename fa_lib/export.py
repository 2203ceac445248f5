"""Export FAN (thesis 4.3) to ONNX, with a dynamic batch dimension, and check it with onnxruntime.

Users of the official package ask for ONNX / TorchScript export. The exported graph
takes ``input`` (B, C, 256, 256) float32 (RGB / 255 crops, C = 3, or 3 + 68 for 2D-to-3D-FAN) and
returns ``heatmaps`` (B, 68, 64, 64), the last stack's output (or every stack's with
``all_stacks=True``: ``heatmaps_0`` ... ``heatmaps_{S-1}``). Decoding the heatmaps to points
(:func:`fa_lib.heatmaps.decode_heatmaps`) and uncropping stay outside the graph, in numpy.

Requires ``onnx==1.23.2`` and ``onnxscript==0.7.2`` (the torch 2.13 exporter, ``dynamo=True``) and,
for :func:`check_onnx`, ``onnxruntime==1.31.1``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .atomic import atomic_write

__all__ = ["export_onnx", "check_onnx", "run_onnx", "ONNX_INSTALL_HINT"]

ONNX_INSTALL_HINT = "pip install onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.31.1"


class _Heatmaps(nn.Module):
    """FAN -> its last (or every) stack's heatmaps as a tensor (or tuple): ONNX outputs."""

    def __init__(self, fan: nn.Module, all_stacks: bool):
        super().__init__()
        self.fan, self.all_stacks = fan, all_stacks

    def forward(self, x):
        outputs = self.fan(x)
        return tuple(outputs) if self.all_stacks else outputs[-1]


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: int = 256,
                all_stacks: bool = False, opset: int | None = None) -> Path:
    """Export a FAN (``fa_lib.models.FAN``, plain or trained; not the FastFAN) to ``path``.

    The batch dimension is dynamic; height and width are fixed at ``input_size``. The file is
    written atomically (:func:`fa_lib.atomic.atomic_write`; one protobuf file, the weights inside:
    FAN is far below protobuf's 2 GB limit). Returns the path.
    """
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError as err:
        raise ImportError(f"ONNX export needs onnx and onnxscript: {ONNX_INSTALL_HINT}") from err
    in_channels = getattr(model, "in_channels", None)
    if in_channels is None:
        raise ValueError(f"export_onnx takes a FAN (with .in_channels), got {type(model).__name__}")
    if input_size % 64:
        raise ValueError(f"input_size must be a multiple of 64 (4x downsampling + 4 hourglass "
                         f"levels), got {input_size}")
    wrapper = _Heatmaps(model, all_stacks).eval()
    example = torch.rand(2, in_channels, input_size, input_size)
    n_stacks = getattr(model, "num_modules", 1)
    output_names = [f"heatmaps_{i}" for i in range(n_stacks)] if all_stacks else ["heatmaps"]
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=["input"],
                                    output_names=output_names, opset_version=opset,
                                    dynamic_shapes={"x": {0: batch}}, verbose=False)
    return atomic_write(path, lambda out: out.write(program.model_proto.SerializeToString()))


def run_onnx(path: str | os.PathLike, inputs: np.ndarray) -> list[np.ndarray]:
    """Run an exported model with onnxruntime (CPU) on float32 ``inputs`` (B, C, H, W)."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"running ONNX models needs onnxruntime: {ONNX_INSTALL_HINT}") from err
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(inputs, dtype=np.float32)})


def check_onnx(model: nn.Module, path: str | os.PathLike, batch_sizes=(1, 3), atol: float = 1e-4,
               seed: int = 0) -> float:
    """Compare onnxruntime's output of ``path`` with ``model`` on random inputs of several batch
    sizes; returns the largest absolute difference, raises ``AssertionError`` above ``atol``."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    model = model.eval()
    for batch in batch_sizes:
        x = torch.rand(batch, model.in_channels, 256, 256, generator=generator)
        with torch.no_grad():
            expected = [t.numpy() for t in model(x)]
        got = run_onnx(path, x.numpy())
        reference = expected if len(got) > 1 else expected[-1:]
        for a, b in zip(reference, got):
            if a.shape != b.shape:
                raise AssertionError(f"ONNX output shape {b.shape} != PyTorch {a.shape} (batch {batch})")
            worst = max(worst, float(np.abs(a - b).max()))
    if worst > atol:
        raise AssertionError(f"ONNX and PyTorch outputs differ by {worst:.3g} > {atol}")
    return worst
