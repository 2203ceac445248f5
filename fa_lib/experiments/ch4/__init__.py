"""Chapter 4 regenerated: 2D-FAN, 3D-FAN, 2D-to-3D-FAN and 3D-FAN-full on the embedded benchmark.

The thesis trains its networks on 300-W-LP and tests them on 300-W, 300-VW, Menpo, AFLW2000-3D and
LS3D-W; none of them can be downloaded here. Every experiment therefore trains on the synthetic
300-W-LP stand-in and tests on the yaw-balanced stand-in, at the scale of the chosen profile
(``fa_lib.profiles``, section ``ch4``). The numbers are ours, on synthetic faces; the thesis's are
written beside them, never mixed with them.

Use: ``ctx = Chapter4("quick")``, then ``ctx.build("4.2")`` (a registered builder: ``fa-lib where
4.2`` says where it is and what it trains). The modules:

- :mod:`.scale`: the resolved scale (:class:`Ch4Setup`) and the thesis's constants;
- :mod:`.data`: the data, test-time inputs, lower resolutions, the depth network's inputs, the
  mean-shape baseline;
- :mod:`.networks`, :mod:`.training`: the networks and their training through the run cache;
- :mod:`.evaluation`: the evaluation protocol and the shared predictions;
- :mod:`.context`: :class:`Chapter4`;
- :mod:`.tables`, :mod:`.figures`: the registered builders (Tables 4.1-4.4, ``4.fig6``,
  ``4.speed``, ``4.real``; Figs. 4.6, 4.8, 4.9, 4.10, 4.12, 4.13-4.15);
- :mod:`.findings`: the verdicts of the thesis's findings; :mod:`.narrative`: sentences from the
  numbers;
- :mod:`.conversion`: the ``fa-lib convert-ls3dw`` harness of Fig. 4.6; :mod:`.speed`: timing;
  :mod:`.explorers`: the explorers' frames.
"""
from fa_lib.experiments.ch4 import figures, tables  # noqa: F401  (registers the builders)
from fa_lib.experiments.ch4.context import Chapter4
from fa_lib.experiments.ch4.scale import MODEL_NAMES, Ch4Setup, ch4_setup

__all__ = ["Chapter4", "Ch4Setup", "ch4_setup", "MODEL_NAMES"]
