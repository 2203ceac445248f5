"""``Chapter4``: the context every chapter-4 builder takes.

It loads the data once, trains the four networks of section 4.3 lazily (each through the run cache,
so a rerun loads them), runs them over the test set once and shares those predictions between the
tables and figures; Table 4.4's sizes and the conversion tool's run (Fig. 4.6) are likewise made
once per context.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch

from fa_lib.experiments.ch4 import findings, narrative, training
from fa_lib.data.synthetic import yaw_bin_of
from fa_lib.experiments.ch4.conversion import (CONVERSION_NOT_RUN, ToolConversion, conversion_errors,
                                               convert_real_faces, convert_with_tool, real_conversion_errors)
from fa_lib.experiments.ch4.data import TEST_2D_LABELS, Ch4Data, load_data
from fa_lib.experiments.ch4.evaluation import DepthEvaluation, Predictions, evaluate_fan, predict_all, predict_depth
from fa_lib.experiments.ch4.scale import MODEL_NAMES, Ch4Setup, ch4_setup, size_budget_setup
from fa_lib.experiments.context import ChapterContext
from fa_lib.experiments.registry import ThesisResult
from fa_lib.experiments.runs import CachedRun
from fa_lib.experiments.verdict import Verdict
from fa_lib.profiles import Profile

TEST_DATASET = "(synthetic stand-in for LS3D-W Balanced)"
DEPTH_NETWORK = training.DEPTH_NAME


class DataUnavailable(RuntimeError):
    """A network or result that this data root cannot give (the message says why)."""


class Chapter4(ChapterContext):
    """Chapter 4's context: ``Chapter4("quick", seed=0, device="auto")``.

    ``setup``: the resolved scale (:class:`~fa_lib.experiments.ch4.scale.Ch4Setup`); ``data``: the
    training and test sets; ``network(name)`` / ``models``: the trained networks of section 4.3
    (:data:`~fa_lib.experiments.ch4.scale.MODEL_NAMES`) as cached runs; ``predictions``: every
    test-set prediction; ``size_variants()``: Table 4.4's networks; ``conversion``: the
    ``fa-lib convert-ls3dw`` run of Fig. 4.6. ``ctx.build("4.2")`` runs a registered builder.
    """

    chapter = 4

    def __init__(self, profile: str | Profile = "quick", *, seed: int = 0, device: str = "auto",
                 data_root: str | os.PathLike | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = print, runs_root: Any = None):
        super().__init__(profile, seed=seed, device=device, data_root=data_root, progress=progress, log=log,
                         runs_root=runs_root)
        self.setup: Ch4Setup = ch4_setup(self.profile)
        self._networks: dict[str, CachedRun] = {}
        self._variants: dict[str, CachedRun] | None = None

    def describe(self) -> str:
        """One line: the network, the budget, the device."""
        s = self.setup
        return (f"profile {s.name}: FAN {s.stacks} stacks, width {s.width}, hourglass depth {s.hg_depth}, "
                f"stem {s.stem_channels}, input {s.input_size} px -> heatmaps {s.heatmap_size} px; "
                f"batch {s.batch_size}, lr {s.lr:g}, iterations {s.iterations}, device {self.device}, "
                f"{torch.get_num_threads()} torch threads")

    # -- data and networks -------------------------------------------------------------------------

    @functools.cached_property
    def data(self) -> Ch4Data:
        """The 300-W-LP stand-in and the yaw-balanced test set (rendered once, cached on disk); with a
        data root the real 300-W-LP, LS3D-W balanced and the other real test sets found under it."""
        data = load_data(self.setup, seed=self.seed, progress=self.progress, data_root=self.data_root)
        for name, why in (data.missing or {}).items():
            self.log(f"{name}: {why}; the results that need it say 'not run'")
        return data

    def unavailable(self, *names: str) -> str | None:
        """Why a result needing the named networks or data cannot run on this data (None when it can):
        the depth network needs the depth of the training set's 3D landmarks, "2D test labels" a test
        set with 2D landmarks."""
        if DEPTH_NETWORK in names and not self.data.has_depth:
            return (f"not run: the depth network of section 4.8 trains on the depth (z) of the 3D landmarks, which "
                    f"300-W-LP's files under {self.data_root} store only as each face's 3DDFA fit, and rebuilt from "
                    f"those fits it cannot be trusted here: {(self.data.depth_check or {}).get('why', '')}")
        if DEPTH_NETWORK in names and self.data.real and self.data.aflw2000 is None:
            return (f"not run: the depth network is tested on AFLW2000-3D (the real test set that stores the "
                    f"landmarks' depth), not found under {self.data_root}")
        if TEST_2D_LABELS in names and not self.data.has_2d_test_labels:
            return (f"not run: {self.data.test.name} holds only the projections of 3D landmarks, no 2D "
                    f"annotations; 2D-FAN's accuracy on real 2D annotations is Table 4.1's")
        return None

    def network(self, name: str) -> CachedRun:
        """One network of section 4.3 (``"2D-FAN"``, ``"3D-FAN"``, ``"2D-to-3D-FAN"``,
        ``"3D-FAN-full depth"``), trained on first use (or loaded from the run cache)."""
        if name not in self._networks:
            common = dict(seed=self.seed, device=self.device, progress=self.progress)
            kinds = {"2D-FAN": "2d", "3D-FAN": "3d", "2D-to-3D-FAN": "2d_to_3d"}
            if name in kinds:
                run = training.train_fan(kinds[name], self.setup, self.data, self.runs, **common)
            elif name == training.DEPTH_NAME:
                why = self.unavailable(DEPTH_NETWORK)
                if why:
                    raise DataUnavailable(why)
                run = training.train_depth(self.setup, self.data, self.runs, **common)
            else:
                raise KeyError(f"no chapter-4 network {name!r}; choose one of {', '.join(MODEL_NAMES)}")
            self._networks[name] = run
        return self._networks[name]

    @property
    def models(self) -> dict[str, CachedRun]:
        """The networks of section 4.3, in :data:`MODEL_NAMES` order (trained on first use); without
        the depth network when the data cannot train it (:meth:`unavailable`)."""
        return {name: self.network(name) for name in MODEL_NAMES
                if not (name == DEPTH_NETWORK and self.unavailable(DEPTH_NETWORK))}

    # -- fa-lib train ------------------------------------------------------------------------------

    def jobs(self) -> list[str]:
        """What ``fa-lib train ch4`` can train: the networks of section 4.3 (the depth network only where
        the data has depth) and Table 4.4's sizes (``size:<label>``)."""
        names = [n for n in MODEL_NAMES if not (n == DEPTH_NETWORK and self.unavailable(DEPTH_NETWORK))]
        return names + [f"size:{label}" for label, _, _ in self.setup.size_rows]

    def run_job(self, job: str) -> None:
        if job.startswith("size:"):
            self.size_variant(job.partition(":")[2])
        elif job in MODEL_NAMES:
            self.network(job)
        else:
            raise ValueError(f"unknown chapter-4 job {job!r}; the jobs are {', '.join(self.jobs())}")

    def size_variant(self, label: str) -> CachedRun:
        """One network of Table 4.4 (see :meth:`size_variants`)."""
        rows = {row[0]: row for row in self.setup.size_rows}
        if label not in rows:
            raise ValueError(f"no Table 4.4 size {label!r}; the sizes are {', '.join(rows)}")
        _, stacks, width = rows[label]
        size_setup = size_budget_setup(self.setup)
        if (stacks, width) == (self.setup.stacks, self.setup.width) and size_setup is self.setup:
            return self.network("3D-FAN")
        return training.train_fan("3d", size_setup, self.data, self.runs, seed=self.seed, stacks=stacks, width=width,
                                  device=self.device, progress=self.progress,
                                  name=f"3D-FAN {stacks} stacks width {width}")

    def size_variants(self) -> dict[str, CachedRun]:
        """Table 4.4's networks (label -> run), 3D-FAN at each size of ``setup.size_rows``, all with
        the same budget (:func:`~fa_lib.experiments.ch4.scale.size_budget_setup`); with the 3D-FAN
        budget the variant equal to the chapter's 3D-FAN is that network, not retrained."""
        if self._variants is None:
            self._variants = {label: self.size_variant(label) for label, _, _ in self.setup.size_rows}
        return self._variants

    def runs_of(self, *names: str) -> dict[str, list[CachedRun]]:
        """``{name: [run]}`` of the named networks of section 4.3 (a result's ``runs``)."""
        return {name: [self.network(name)] for name in names}

    def runs_used(self) -> list[CachedRun]:
        """Every run this context has trained or loaded so far (each once)."""
        out: list[CachedRun] = []
        for run in [*self._networks.values(), *(self._variants or {}).values()]:
            if all(run is not seen for seen in out):
                out.append(run)
        return out

    @functools.cached_property
    def predictions(self) -> Predictions:
        """Every network of section 4.3 over the test set (10% box noise), computed once."""
        return predict_all({name: run.model for name, run in self.models.items()}, self.data, self.setup,
                           seed=self.seed, device=self.device)

    @property
    def depth_dataset(self) -> str | None:
        """The test set of the depth figures in provenance (None: the chapter's test set)."""
        return f"{self.data.aflw2000.name} ({len(self.data.aflw2000)} faces)" if self.data.real else None

    @functools.cached_property
    def depth_evaluation(self) -> DepthEvaluation:
        """3D-FAN-full on the test set that has depth: the chapter's test set, or on real data AFLW2000-3D
        (LS3D-W stores only projections), computed once."""
        if not self.data.real:
            p = self.predictions
            return DepthEvaluation(self.data.test, p.fan3d, p.depth_z, p.bins)
        samples = self.data.aflw2000
        fan3d = evaluate_fan(self.network("3D-FAN").model, samples, self.setup, landmarks="3d", seed=self.seed,
                             device=self.device)
        depth_z = predict_depth(self.network(DEPTH_NETWORK).model, samples, fan3d.predictions, self.setup,
                                seed=self.seed, device=self.device)
        return DepthEvaluation(samples, fan3d, depth_z, yaw_bin_of(np.asarray(samples.array("pose"))))

    def not_run(self, result_id: str, kind: str, why: str) -> ThesisResult:
        """The result of a builder that cannot run on this data: nothing written, the reason noted."""
        self.log(f"{kind} {result_id}: {why}")
        return ThesisResult(result_id, kind, notes=[why], data={"not_run": why})

    @functools.cached_property
    def conversion(self) -> ToolConversion:
        """Fig. 4.6's run of ``fa-lib convert-ls3dw`` (with ``.pts`` files, and guided by 2D-FAN); on real
        data, AFLW2000-3D's faces guided by 2D-FAN (the thesis's protocol; they have no 2D annotations)."""
        if self.data.real:
            if self.data.aflw2000 is None:
                raise DataUnavailable(CONVERSION_NOT_RUN)
            return convert_real_faces(self.network("2D-to-3D-FAN").model, self.network("2D-FAN").model, self.setup,
                                      self.data, self.data.aflw2000, self.conversion_bins, seed=self.seed,
                                      device=self.device)
        return convert_with_tool(self.network("2D-to-3D-FAN").model, self.network("2D-FAN").model, self.setup,
                                 self.data, seed=self.seed, device=self.device)

    @property
    def conversion_bins(self) -> np.ndarray:
        """|yaw| bins of the faces Fig. 4.6 converts: the test set's, or AFLW2000-3D's (its own poses)."""
        if self.data.real:
            return yaw_bin_of(np.asarray(self.data.aflw2000.array("pose")))
        return self.data.test_bins

    @functools.cached_property
    def conversion_curves(self) -> dict[str, np.ndarray]:
        """Fig. 4.6's per-face errors against the true 3D landmarks (the tool's outputs, 3D-FAN
        alone, no conversion), computed once."""
        if self.data.real:
            fan3d = evaluate_fan(self.network("3D-FAN").model, self.data.aflw2000, self.setup, landmarks="3d",
                                 seed=self.seed, device=self.device)
            return real_conversion_errors(self.conversion, self.data.aflw2000, fan3d.nme)
        return conversion_errors(self.conversion, self.data, self.predictions.fan3d.nme)

    def budgets(self, *names: str) -> dict[str, Any]:
        """Provenance: the training budgets of the named networks of section 4.3."""
        return {name: self.network(name).budget for name in names}

    # -- writing -----------------------------------------------------------------------------------

    def provenance_extra(self) -> dict[str, Any]:
        record = super().provenance_extra()
        record["chapter4_setup"] = self.setup.to_dict()
        if "data" in self.__dict__:
            record["data"] = self.data.describe()
        return record

    @property
    def test_dataset(self) -> str:
        if self.data.real:
            return f"{self.data.test.name} (real LS3D-W balanced, {len(self.data.test)} faces; |yaw| fitted to the landmarks)"
        return f"{self.data.test.name} {TEST_DATASET}"

    @property
    def test_set_words(self) -> str:
        """The test set in a caption."""
        return "the real LS3D-W balanced" if self.data.real else "the synthetic yaw-balanced test set"

    def write_test_table(self, table_id: str, df: pd.DataFrame, *, caption: str, budget: Any = None,
                         wall_time_s: float | None = None, verdicts: list[Verdict] | None = None,
                         dataset: str | None = None, dataset_size: int | None = None,
                         extra: Mapping[str, Any] | None = None):
        """:meth:`write_table` on the chapter's test set by default."""
        return self.write_table(table_id, df, dataset=dataset or self.test_dataset,
                                dataset_size=len(self.data.test) if dataset_size is None else dataset_size,
                                caption=caption, budget=budget, wall_time_s=wall_time_s, extra=extra,
                                verdicts=verdicts)

    def write_test_figure(self, fig, fig_id: str, *, caption: str, budget: Any = None, dataset: str | None = None):
        """:meth:`write_figure` on the chapter's (synthetic) test set, or on ``dataset`` when named."""
        if dataset is None:
            dataset = self.test_dataset if self.data.real else f"{self.data.test.name} (synthetic)"
        return self.write_figure(fig, fig_id, dataset=dataset, caption=caption, budget=budget)

    # -- the training section ----------------------------------------------------------------------

    def training_report(self) -> ThesisResult:
        """Did the four networks learn? Their budgets (``data["budgets"]``) and, for 2D-FAN and
        3D-FAN, the verdict of their test NME against the mean shape placed in the same noisy box
        (a model that ignores the image). Not a thesis result: nothing is written."""
        budgets = training.budget_summary(self.models)
        p = self.predictions
        nme = {"3D-FAN": float(np.mean(p.fan3d.nme)), "mean shape (3D)": float(np.mean(p.baseline3d))}
        if p.fan2d is not None:
            nme = {"2D-FAN": float(np.mean(p.fan2d.nme)), "mean shape (2D)": float(np.mean(p.baseline2d)), **nme}
        return ThesisResult("4.training", kind="table", verdicts=findings.training_verdicts(nme),
                            runs={name: [run] for name, run in self.models.items()},
                            notes=[narrative.training(nme)], data={"budgets": budgets, "mean_nme": nme})
