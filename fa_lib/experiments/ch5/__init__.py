"""Chapter 5 regenerated: hierarchical binary networks for landmark localisation and face parsing.

The numbers are ours, on synthetic faces (unless ``data_root`` holds the real datasets), with small
networks and short schedules under the quick profile; the thesis's numbers are written beside them,
never mixed with them. Importing the package registers every builder of the chapter
(``fa-lib where 5.2``):

- :mod:`.scale`: the profile's chapter-5 scale (:class:`Ch5Setup`) and the networks (:class:`NetSpec`,
  :class:`Recipe`, ``OURS``, ``BOTTLENECK``, ...);
- :mod:`.data`: training and test sets, prepared test tensors, decoding;
- :mod:`.context`: :class:`Chapter5`, the context every builder takes: runs trained once, cached on disk;
- :mod:`.tables`: Tables 5.1-5.16; :mod:`.timing`: step timings and table ``5.5.1_training_time``;
- :mod:`.figures`: Figs. 5.2, 5.5, 5.7, 5.8, 5.10-5.12;
- :mod:`.packed`: packed (XNOR/popcount) inference, table and figure ``5.packed_inference``;
- :mod:`.explorers`: the binarization explorer's frames; :mod:`.kernels`: the kernels' benchmark and
  speed targets; :mod:`.narrative`: the text written from the numbers and verdicts.
"""
from fa_lib.experiments.ch5 import figures, packed, tables, timing  # noqa: F401  (register the builders)
from fa_lib.experiments.ch5.context import Chapter5, RunResult, chapter_jobs
from fa_lib.experiments.ch5.scale import Ch5Setup, NetSpec, Recipe, ch5_setup

__all__ = ["Chapter5", "RunResult", "chapter_jobs", "Ch5Setup", "NetSpec", "Recipe", "ch5_setup"]
