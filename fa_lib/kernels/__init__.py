"""Bit-packed binary convolution for the binary networks of chapter 5 (eq. 5.1-5.2).

- :mod:`fa_lib.kernels.xnor`: the C kernels (AVX-512 VPOPCNTDQ / AVX2 / scalar, run-time dispatch,
  ``FA_LIB_XNOR_ISA`` to force one) and their torch wrapper: BN+sign thresholds, packing, binary conv.
- :mod:`fa_lib.kernels.packed`: :func:`pack_model` (packed inference of a trained binary network),
  :func:`save_packed` / :func:`load_packed`, :func:`compression_report` (thesis Fig. 5.4).
- :mod:`fa_lib.kernels.fileformat`: the versioned packed-weights file.
- :mod:`fa_lib.kernels.bench`: speed against torch's float convolution (``python -m fa_lib.kernels.bench``).

Submodules are imported lazily so that ``import fa_lib.kernels`` never needs the compiled extension.
"""
import importlib

__all__ = ["xnor", "packed", "fileformat", "bench"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
