"""Chapter 3 regenerated: CALE, convolutional aggregation of local evidence (BMVC 2016).

CALE (:mod:`fa_lib.models.cale`) is trained here in the stages of section 3.1.4 on the AFLW-PIFA
stand-in (grey faces, 34 points with visibility counting occluders; train and test drawn from
different people) unless ``data_root`` holds the real AFLW-PIFA, at the scale of the profile
(``fa_lib.profiles.Ch3Scale``). Importing the package registers every builder of the chapter
(``fa-lib where 3.3``):

- :mod:`.context`: :class:`Chapter3`, the data, the staged training (through the run cache) and the
  predictions every builder shares;
- :mod:`.tables`: Tables 3.3-3.6; :mod:`.figures`: Figs. 3.4, 3.5, the learning curves and the
  evidence explorer's frames.
"""
from fa_lib.experiments.ch3 import figures, tables  # noqa: F401  (register the builders)
from fa_lib.experiments.ch3.context import CaleRun, Chapter3, Predictions

__all__ = ["Chapter3", "CaleRun", "Predictions"]
