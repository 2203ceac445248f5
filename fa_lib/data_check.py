"""``fa-lib check-data``: what a data root holds, before hours of training.

For every real dataset a chapter reads (:data:`DATASETS`): whether it is found under the data root in
the layout of :mod:`fa_lib.data.real` (or :mod:`fa_lib.data.pets`), how many faces it has against the
count the thesis states, which of a sample of its files fail to parse (the first few errors), and what
each chapter does with the root: which tables use the real data, which fall back to the synthetic
stand-ins, and which chapter cannot run at all (:func:`unusable_chapters`). ``fa-lib reproduce
--data-root`` runs the same check first and stops before any training when a selected chapter's data is
unusable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from fa_lib.data.pets import pet_landmark_dataset
from fa_lib.data.real import RealFaceDataset
from fa_lib.experiments.ch3.context import PIFA_READER_FILE, find_aflw_pifa
from fa_lib.experiments.ch4.data import REAL_2D_SETS, find_2d_set
from fa_lib.experiments.common import evenly_spaced


def _aflw_pifa(split: str) -> Callable[[Path], Dataset]:
    def open_split(root: Path) -> Dataset:
        folder = find_aflw_pifa(root)
        if folder is None:
            raise FileNotFoundError(f"no AFLW-PIFA (aflw_pifa/ with train/ and test/) under {root}")
        reader = folder / PIFA_READER_FILE
        if not reader.is_file():
            raise ValueError(f"AFLW-PIFA found at {folder}, but {reader} (the .mat files' key names, "
                             '{"points_key": ..., "visibility_key": ...}) is missing')
        return RealFaceDataset("aflw_pifa", folder, split, **json.loads(reader.read_text()))
    return open_split


def _ch4_2d_set(label: str) -> Callable[[Path], Dataset]:
    def open_set(root: Path) -> Dataset:
        folder = find_2d_set(root, label)
        if folder is None:
            raise FileNotFoundError(f"no {label} folder under {root} (looked for {', '.join(REAL_2D_SETS[label][1])})")
        kind = REAL_2D_SETS[label][0]
        return RealFaceDataset(kind, folder, "all" if kind == "300vw" else "")
    return open_set


@dataclass(frozen=True)
class DatasetSpec:
    """A real dataset a chapter reads: how to open it under a root, the thesis's count, the chapters
    that cannot run without it when a data root is given (``required_by``) and what uses it."""

    name: str
    open: Callable[[Path], Dataset]
    thesis_count: int | None
    count_source: str
    used_for: str
    required_by: tuple[str, ...] = ()


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("300-W-LP", lambda root: RealFaceDataset("300w_lp", root, "train"), 61225,
                "thesis Table 2.1 and section 2.3.1 (with the flipped copies)",
                "chapters 4 and 5: training of every network; chapter 6: the training pairs",
                required_by=("ch4", "ch5", "ch6")),
    DatasetSpec("LS3D-W balanced", lambda root: RealFaceDataset("ls3dw", root, "balanced"), 7200,
                "thesis sections 2.3.2 and 4.7 (Table 2.1 says 7,800)",
                "chapter 4: Tables 4.2-4.4, Figs. 4.9, 4.10, 4.14; chapter 5: Tables 5.10, 5.13-5.16; "
                "chapter 6: the test pairs", required_by=("ch4", "ch5", "ch6")),
    DatasetSpec("AFLW2000-3D", lambda root: RealFaceDataset("aflw2000_3d", root, "test"), 2000,
                "thesis section 2.3.3", "chapter 4: Fig. 4.6; chapter 5: Fig. 5.5b"),
    DatasetSpec("300-W test", _ch4_2d_set("300-W"), 600, "thesis section 2.3 (Indoor and Outdoor)",
                "chapter 4: Table 4.1"),
    DatasetSpec("Menpo (2D)", _ch4_2d_set("Menpo"), None, "the thesis tests on Menpo's 68-point faces",
                "chapter 4: Table 4.1"),
    DatasetSpec("300-VW", _ch4_2d_set("300-VW"), 218595, "thesis section 2.3 (all 114 videos; 64 for testing)",
                "chapter 4: Table 4.1 (categories A/B/C from 300VW/categories.json)"),
    DatasetSpec("AFLW-PIFA train", _aflw_pifa("train"), 3901, "thesis sections 3.2.1 and 5.4.2",
                "chapter 3: training of CALE"),
    DatasetSpec("AFLW-PIFA test", _aflw_pifa("test"), 1299, "thesis sections 3.2.1 and 5.4.2",
                "chapter 3: Tables 3.3-3.5, Figs. 3.4-3.5; chapter 5: Tables 5.11, 5.12, Fig. 5.5a"),
    DatasetSpec("Oxford-IIIT-Pet with 22-point annotations (test)", lambda root: pet_landmark_dataset(root, "test"),
                None, "the thesis's annotations are not public", "chapter 3: Table 3.6, Figs. 3.6, 3.7"),
    DatasetSpec("AFLW", lambda root: RealFaceDataset("aflw", root, "all"), 25993, "thesis Table 2.1 and section 2.3",
                "chapter 6: training pairs (framed from its 21 points), when present"),
    DatasetSpec("CelebA (training split)", lambda root: RealFaceDataset("celeba", root, "train"), None,
                "the thesis draws ~20k random faces (section 6.1)",
                "chapter 6: 20,000 random training pairs (framed from its 5 points), when present"),
    DatasetSpec("WiderFace validation", lambda root: RealFaceDataset("widerface", root, "val"), None,
                "the thesis used ~200 selected faces", "chapter 6: Fig. 6.9"),
)


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found for one dataset."""

    name: str
    found: bool
    count: int = 0
    thesis_count: int | None = None
    checked: int = 0
    errors: list[str] = field(default_factory=list)
    problem: str = ""
    used_for: str = ""

    @property
    def usable(self) -> bool:
        return self.found and not self.problem and not self.errors

    def row(self) -> dict[str, Any]:
        thesis = "" if self.thesis_count is None else f"{self.thesis_count:,}"
        return {"dataset": self.name, "found": "yes" if self.found else "no",
                "faces": f"{self.count:,}" if self.found else "", "thesis": thesis,
                "parsed": f"{self.checked - len(self.errors)}/{self.checked}" if self.found else "",
                "used for": self.used_for, "problem": self.problem or "; ".join(self.errors[:3])}


def _check_sample(sample: dict) -> None:
    image = np.asarray(sample["image"])
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"image of shape {image.shape}")
    visibility = sample.get("visibility")
    for key in ("landmarks_2d", "landmarks_3d"):
        points = sample.get(key)
        if points is None:
            continue
        finite = np.isfinite(np.asarray(points)[:, :2]).all(1)
        # a point may be missing only where the dataset says it is not visible (AFLW marks visible points only)
        marked = np.ones(len(finite), bool) if visibility is None or len(visibility) != len(finite) else \
            np.asarray(visibility, bool)
        if not finite[marked].all():
            raise ValueError(f"{key} has non-finite x, y")


def check_dataset(spec: DatasetSpec, root: Path, sample: int = 50) -> DatasetReport:
    """Open ``spec`` under ``root``, count its faces and read ``sample`` of them spread over the set
    (all when ``sample`` <= 0), keeping the first errors with the file that caused them."""
    report = DatasetReport(spec.name, found=False, thesis_count=spec.thesis_count, used_for=spec.used_for)
    try:
        dataset = spec.open(root)
    except FileNotFoundError as error:
        report.problem = f"not found: {error}"
        return report
    except (ValueError, OSError) as error:
        report.found, report.problem = True, f"cannot be read: {error}"
        return report
    report.found, report.count = True, len(dataset)
    n = report.count if sample <= 0 else min(sample, report.count)
    indices = evenly_spaced(report.count, n)
    for i in indices:
        try:
            _check_sample(dataset[int(i)])
        except Exception as error:  # a parse failure of any kind is what this reports
            records = getattr(dataset, "records", None)
            where = records[int(i)] if records is not None else f"item {int(i)}"
            report.errors.append(f"{where}: {type(error).__name__}: {error}")
        report.checked += 1
    return report


def check_data(data_root, sample: int = 50) -> list[DatasetReport]:
    """:func:`check_dataset` for every dataset of :data:`DATASETS`."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {root} is not a folder")
    return [check_dataset(spec, root, sample) for spec in DATASETS]


def chapter_plan(reports: Sequence[DatasetReport]) -> dict[str, str]:
    """What each chapter does with this data root (real data, stand-ins, or cannot run)."""
    by_name = {r.name: r for r in reports}
    ok = {name: r.usable for name, r in by_name.items()}
    plan = {}
    if ok["AFLW-PIFA train"] and ok["AFLW-PIFA test"]:
        ch3 = "CALE on the real AFLW-PIFA"
    else:
        ch3 = "the synthetic AFLW-PIFA stand-in (no usable AFLW-PIFA)"
    ch3 += "; Table 3.6 from the pet annotations" if ok["Oxford-IIIT-Pet with 22-point annotations (test)"] else (
        "; Table 3.6 not reproduced (no pet annotations)")
    plan["ch3"] = ch3
    missing4 = [r.name for r in reports if "ch4" in _required(r.name) and not r.usable]
    sets_2d = [name for name in ("300-W test", "Menpo (2D)", "300-VW") if ok[name]]
    plan["ch4"] = (f"cannot run: {', '.join(missing4)} unusable" if missing4 else
                   "the real 300-W-LP and LS3D-W balanced (|yaw| fitted to the landmarks); Table 4.1 on "
                   + (", ".join(sets_2d) if sets_2d else "no real 2D set (not run)")
                   + ("; Fig. 4.6 on AFLW2000-3D" if ok["AFLW2000-3D"] else "; Fig. 4.6 not run (no AFLW2000-3D)")
                   + ("; the depth network and Figs. 4.12, 4.15 on AFLW2000-3D when 300-W-LP's landmark depth "
                      "rebuilt from its 3DDFA fits passes the chapter's check" if ok["AFLW2000-3D"] else
                      "; the depth network, Figs. 4.12, 4.15 not run (no AFLW2000-3D to test depth on)")
                   + "; Figs. 4.8, 4.13 not run (LS3D-W has no 2D annotations)")
    missing = [r.name for r in reports if "ch5" in _required(r.name) and not r.usable]
    plan["ch5"] = (f"cannot run: {', '.join(missing)} unusable" if missing else
                   "the real 300-W-LP and LS3D-W balanced" + ("; Fig. 5.5b on AFLW2000-3D" if ok["AFLW2000-3D"] else ""))
    missing6 = [r.name for r in reports if "ch6" in _required(r.name) and not r.usable]
    # the optional training sets are read when found: found but unreadable would stop the chapter later
    missing6 += [name for name in CH6_OPTIONAL_SETS if by_name[name].found and not by_name[name].usable]
    extra6 = [name for name in CH6_OPTIONAL_SETS if ok[name]]
    plan["ch6"] = (f"cannot run: {', '.join(missing6)} unusable" if missing6 else
                   "16 -> 64 px pairs made from the real faces: 300-W-LP, "
                   + "".join(f"{name.split(' ')[0]}, " for name in extra6)
                   + "the LS3D-W balanced faces not held out for testing (thesis 6.1"
                   + ("" if len(extra6) == len(CH6_OPTIONAL_SETS) else
                      "; not found: " + ", ".join(n.split(" ")[0] for n in CH6_OPTIONAL_SETS if n not in extra6))
                   + "), a yaw-balanced part of LS3D-W balanced for testing"
                   + ("; Fig. 6.9 from WiderFace" if ok["WiderFace validation"] else ""))
    return plan


#: the training sets chapter 6 adds when the data root has them (:func:`fa_lib.experiments.ch6.data.real_pairs`)
CH6_OPTIONAL_SETS = ("AFLW", "CelebA (training split)")


def _required(name: str) -> tuple[str, ...]:
    return next(spec.required_by for spec in DATASETS if spec.name == name)


def unusable_chapters(reports: Sequence[DatasetReport], chapters: Sequence[str] | None = None) -> dict[str, str]:
    """The chapters (among ``chapters``, e.g. ``["ch5"]``; None: all) that cannot run on this data root,
    with why."""
    out = {}
    for chapter, plan in chapter_plan(reports).items():
        if plan.startswith("cannot run") and (chapters is None or chapter in chapters):
            out[chapter] = plan
    return out


def format_report(root, reports: Sequence[DatasetReport]) -> str:
    """The report as text: one line per dataset, its first parse errors, and each chapter's plan."""
    lines = [f"data root {root}"]
    for r in reports:
        count = f"{r.count:,} faces" + (f" (thesis {r.thesis_count:,})" if r.thesis_count else "") if r.found else ""
        state = "ok" if r.usable else ("MISSING" if not r.found else "PROBLEM")
        lines.append(f"  [{state:7}] {r.name}: {count or r.problem}")
        if r.found and r.checked:
            lines.append(f"            {r.checked - len(r.errors)}/{r.checked} sampled faces parsed; used for {r.used_for}")
        if r.found and r.problem:
            lines.append(f"            {r.problem}")
        for error in r.errors[:3]:
            lines.append(f"            error: {error}")
    lines.append("chapters:")
    for chapter, plan in chapter_plan(reports).items():
        lines.append(f"  {chapter}: {plan}")
    return "\n".join(lines)
