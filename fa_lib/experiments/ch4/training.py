"""Training the chapter's networks, each once: every run goes through the shared run cache
(:class:`fa_lib.experiments.runs.RunCache`), keyed by a record of everything that changes its
weights (model, augmentation, data, budget, seed), so a rerun loads instead of training.

The records are the ones the chapter has always used: a network trained before this module existed
is found under the same folder (``<runs root>/<profile>/<name>-<key>``) and loaded.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from fa_lib import train as trainer
from fa_lib.data.augment import thesis_augmentation
from fa_lib.data.pipeline import TransformedDataset
from fa_lib.experiments.ch4.data import Ch4Data, DepthInputs, depth_sigma, eval_augmentation, fan_inputs
from fa_lib.experiments.ch4.networks import FAN_KINDS, new_depth_network, new_fan
from fa_lib.experiments.ch4.scale import EVAL_BOX_NOISE, EVAL_SEED, Ch4Setup
from fa_lib.experiments.runs import CachedRun, RunCache
from fa_lib.models.fan import parameter_count
from fa_lib.profiles import TrainConfig

DEPTH_NAME = "3D-FAN-full depth"
#: what the builders train, in words (``trains=`` of the registry; ``fa-lib where``)
TRAINS_2D = "2D-FAN (training.train_fan kind='2d')"
TRAINS_3D = "3D-FAN (training.train_fan kind='3d')"
TRAINS_2D_TO_3D = "2D-to-3D-FAN (training.train_fan kind='2d_to_3d')"
TRAINS_DEPTH = "the depth ResNet of 3D-FAN-full (training.train_depth)"
TRAINS_SIZES = ("3D-FAN at each size of Table 4.4 (training.train_fan kind='3d' with stacks/width, "
                "Chapter4.size_variants)")


def depth_loss(outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
    """L2 loss on the landmarks' depth (section 4.8: "trained using the L2 loss")."""
    return F.mse_loss(outputs.float(), batch["depth_target"].float())


def split_items(samples: Dataset, setup: Ch4Setup, seed: int, train_transform, val_transform):
    """Section 4.3.2: hold 10% of the training set out for validation; augmentation only on the
    training part, the validation part seen as at test time (10% box noise)."""
    train_part, val_part = trainer.split_train_val(samples, setup.val_fraction, seed=seed)
    train_items = TransformedDataset(train_part, train_transform, seed=seed)
    val_items = TransformedDataset(val_part, val_transform, seed=seed + EVAL_SEED) if len(val_part) else None
    return train_items, val_items


def _train(name: str, model: nn.Module, record: dict, train_items: Dataset, val_items: Dataset | None, *,
           runs: RunCache, setup: Ch4Setup, config: TrainConfig, seed: int, device: Any, progress: bool,
           **trainer_kwargs) -> CachedRun:
    """``model`` trained with :class:`fa_lib.train.Trainer` (resuming an interrupted run), or the
    finished run of ``record`` loaded from ``runs``."""
    def fit(folder: Path | None):
        started = time.perf_counter()
        run = trainer.Trainer(model, train_items, val_items, device=device, checkpoint_dir=folder, seed=seed,
                              progress=progress, num_workers=setup.loader_workers, name=name,
                              **config.trainer_kwargs(), **trainer_kwargs)
        history = run.fit()
        budget = {"model": name, "iterations": run.total_steps, "epochs": run.epoch,
                  "batch_size": run.batch_size, "lr": run.lr, "optimizer": config.optimizer,
                  "lr_milestones_steps": run.milestone_steps, "lr_gamma": run.gamma,
                  "train_items": len(train_items), "val_items": len(val_items) if val_items else 0,
                  "parameters": parameter_count(model), "wall_time_s": round(time.perf_counter() - started, 1),
                  "device": str(run.device), "seed": seed}
        budget.update({k: v for k, v in record.items() if k in ("augmentation", "fan", "depth_layers",
                                                                "depth_input_size", "cpu_bf16", "channels_last")})
        return budget, history

    return runs.get_or_train(name, record, model, fit)


def train_fan(kind: str, setup: Ch4Setup, data: Ch4Data, runs: RunCache, *, seed: int = 0,
              stacks: int | None = None, width: int | None = None, device: Any = "auto",
              progress: bool = False, name: str | None = None) -> CachedRun:
    """Train (or load) one FAN of section 4.3 on the 300-W-LP stand-in (or the real 300-W-LP).

    ``kind``: ``"2d"`` (2D-FAN, 2D landmarks), ``"3d"`` (3D-FAN, projections of the 3D landmarks)
    or ``"2d_to_3d"`` (2D-to-3D-FAN: RGB + a Gaussian per ground-truth 2D landmark in, 3D-landmark
    heatmaps out, section 4.3.1). Augmentation and optimiser as in 4.3.2 (RMSprop; flip, rotation,
    scale, colour, occlusion, box noise up to 20%; 2D-to-3D-FAN: wider rotation and scale, and
    ``setup.lr_2d_to_3d``); budget and scale from ``setup``; ``stacks``/``width`` (Table 4.4)
    override the layout.
    """
    model = new_fan(setup, kind, seed=seed, stacks=stacks, width=width)
    guided = kind == "2d_to_3d"
    landmarks = "2d" if kind == "2d" else "3d"
    augmentation = thesis_augmentation("2d_to_3d" if guided else "fan")
    train_items, val_items = split_items(
        data.train, setup, seed, fan_inputs(setup, landmarks, augment=augmentation, guide=guided),
        fan_inputs(setup, landmarks, augment=eval_augmentation(EVAL_BOX_NOISE), guide=guided))
    iterations = setup.iterations_2d_to_3d if guided else setup.iterations
    config = setup.train_config(lr=setup.lr_2d_to_3d if guided else setup.lr, iterations=iterations)
    record = fan_record(kind, setup, data, seed=seed, stacks=stacks, width=width)
    assert record["in_channels"] == model.in_channels
    return _train(name or FAN_KINDS[kind], model, record, train_items, val_items, runs=runs, setup=setup,
                  config=config, seed=seed, device=device, progress=progress, loss="l2")


def fan_record(kind: str, setup: Ch4Setup, data: Ch4Data, *, seed: int = 0, stacks: int | None = None,
               width: int | None = None) -> dict[str, Any]:
    """The run-cache record (its key) of :func:`train_fan`'s network: exactly the record the chapter
    has always used, so cached runs stay valid."""
    guided = kind == "2d_to_3d"
    augmentation = thesis_augmentation("2d_to_3d" if guided else "fan")
    iterations = setup.iterations_2d_to_3d if guided else setup.iterations
    return {"kind": kind, "fan": setup.fan_kwargs(stacks, width), "in_channels": 3 + (68 if guided else 0),
            "augmentation": augmentation.to_dict(), "input_size": setup.input_size,
            "heatmap_size": setup.heatmap_size, "sigma": setup.sigma, "batch_size": setup.batch_size,
            "lr": setup.lr_2d_to_3d if guided else setup.lr, "iterations": iterations, "epochs": setup.epochs,
            "milestones": setup.lr_milestones, "gamma": setup.lr_gamma, "val_fraction": setup.val_fraction,
            "train_set": data.train_set_key(), "seed": seed, **setup.speed_record()}


def train_depth(setup: Ch4Setup, data: Ch4Data, runs: RunCache, *, seed: int = 0, device: Any = "auto",
                progress: bool = False) -> CachedRun:
    """Train (or load) the depth ResNet of 3D-FAN-full (section 4.8): RGB crop + Gaussian maps at
    the ground-truth 3D-landmark projections in, the landmarks' depth out, L2 loss; the same
    augmentation and learning rate as 3D-FAN, ``setup.depth_iterations`` steps."""
    model = new_depth_network(setup, seed=seed)
    augmentation = thesis_augmentation("fan")
    train_items, val_items = split_items(data.train, setup, seed, DepthInputs(setup, augmentation),
                                         DepthInputs(setup, eval_augmentation(EVAL_BOX_NOISE)))
    config = setup.train_config(iterations=setup.depth_iterations)
    record = {"kind": "depth", "depth_layers": setup.depth_layers, "depth_input_size": setup.depth_input_size,
              "depth_sigma": depth_sigma(setup), "augmentation": augmentation.to_dict(),
              "input_size": setup.input_size, "heatmap_size": setup.heatmap_size,
              "batch_size": setup.batch_size, "lr": setup.lr, "iterations": setup.depth_iterations,
              "epochs": setup.epochs, "milestones": setup.lr_milestones, "gamma": setup.lr_gamma,
              "train_set": data.train_set_key(), "seed": seed, **setup.speed_record(),
              # real data: the targets are rebuilt from the 3DDFA fits (a new method is a new run)
              **({"depth_targets": (data.depth_check or {}).get("source")} if data.real else {})}
    return _train(DEPTH_NAME, model, record, train_items, val_items, runs=runs, setup=setup, config=config,
                  seed=seed, device=device, progress=progress, loss=depth_loss, input_key="depth_input")


def budget_summary(models: Mapping[str, CachedRun]) -> pd.DataFrame:
    """One row per trained network: parameters, iterations, batch, lr, wall time, cached."""
    rows = []
    for name, run in models.items():
        last = run.history[-1] if run.history else {}
        rows.append({"model": name, "parameters": parameter_count(run.model),
                     "iterations": run.budget.get("iterations"), "batch": run.budget.get("batch_size"),
                     "lr": run.budget.get("lr"), "train wall time (s)": run.budget.get("wall_time_s"),
                     "final train loss": last.get("train_loss"), "final val NME (%)":
                     None if last.get("val_nme") is None else 100 * last["val_nme"],
                     "loaded from the run cache": run.cached})
    return pd.DataFrame(rows)


def training_budgets(models: Mapping[str, CachedRun], names: Sequence[str] | None = None) -> dict:
    """Provenance record of the training budgets of ``names`` (all models by default)."""
    return {n: models[n].budget for n in (names or models)}
