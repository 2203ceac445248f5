"""Chapter 6 regenerated: Super-FAN, super-resolution and landmark localisation of tiny faces (CVPR 2018).

Super-FAN (:mod:`fa_lib.models.superfan`, trained by :mod:`fa_lib.adversarial`) and its baselines are
trained here on the synthetic 16 -> 64 px face pairs (:func:`fa_lib.data.lowres.lowres_pairs`; the test
set is yaw-balanced like LS3D-W Balanced) at the scale of the profile (``fa_lib.profiles.Ch6Scale``).
Importing the package registers every builder of the chapter (``fa-lib where 6.2``):

- :mod:`.context`: :class:`Chapter6`, the data, every trained network (through the run cache) and the
  super-resolved test faces every builder shares;
- :mod:`.tables`: Tables 6.1-6.5 and the training cost; :mod:`.figures`: Figs. 6.4, 6.6, 6.9, the real
  tiny faces and the resolution explorer's frames.
"""
from fa_lib.experiments.ch6 import figures, tables  # noqa: F401  (register the builders)
from fa_lib.experiments.ch6.context import Chapter6, SRMethod, TrainedRun

__all__ = ["Chapter6", "SRMethod", "TrainedRun"]
