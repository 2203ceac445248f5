"""fa_lib: executable companion to A. Bulat, "Deep learning for real world face alignment" (PhD thesis,
University of Nottingham, 2019).

What is implemented: the FAN family of chapter 4 (2D-FAN, 3D-FAN, 2D-to-3D-FAN and the depth network
of 3D-FAN-full; official face-alignment checkpoints load into them), the hierarchical binary networks
and blocks of chapter 5 (with bit-packed XNOR kernels for their inference, and the face-parsing
network of 5.8), the landmark maths (crops, heatmap targets and decoding, the NME / AUC metrics), the
synthetic benchmark that stands in for the thesis's datasets (plus readers for the real ones), one
trainer, the ``FaceAligner`` tool and the LS3D-W conversion tool, and the chapter-4 and chapter-5
experiments that regenerate their tables and figures.

Not implemented yet: CALE (chapter 3) and Super-FAN (chapter 6). Their book pages describe the
chapters; only pieces they would use exist (the disc heatmap targets of CALE's detector,
``fa_lib.heatmaps.disc_heatmaps``; the 16 -> 64 px low-resolution face pairs of chapter 6,
``fa_lib.data.lowres``).

Layers (a module imports from its own layer and the ones before it): core maths (``landmarks``,
``heatmaps``, ``geometry``, ``metrics``, ``atomic``, ``device``) -> ``models``, ``data``, ``train`` ->
the aligner API (``api``, ``inference``, ``detectors``, ``peers``, ``convert_ls3dw``, ``export``) ->
reproduction machinery (``profiles``, ``experiments``, ``reproduce``, ``results``, ``bookgen``,
``widgets``) -> ``cli``; the one exception is that the synthetic-data builders read their sizes from
``fa_lib.profiles`` (a module without fa_lib imports). ``tests/test_layering.py`` checks that the
import graph has no cycle.
"""
__version__ = "0.1.0"
