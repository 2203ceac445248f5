"""One trainer for every model of the thesis: losses, schedules, checkpoints, resume, DDP, evaluation.

What the thesis prescribes and where it is implemented here:

- Section 4.3.2 (FAN): RMSprop [97], minibatch 10, learning rate 1e-4 dropped to 1e-5 after 15 epochs
  and to 1e-6 after another 15, 40 epochs in all (2D-to-3D-FAN: initial rate 1e-3); 10% of the
  training set held out for validation (``split_train_val``). ``thesis_schedule("fan")``.
- Section 5.5.1 (binary networks): RMSprop, 55 epochs, rate 2.5e-4 dropped four times to 5e-5, and
  the sigmoid binary cross-entropy of eq. 5.3 (``loss="sigmoid_bce"``) instead of the L2 heatmap
  regression of chapter 4 (``loss="l2"``); Table 5.7 compares the two.
- Section 5.8 (face parsing): per-pixel class scores, ``loss="log_softmax"`` (cross-entropy).
- Intermediate supervision (chapter 4, following the stacked hourglass [69]): a stacked model
  returns one output per stack and the loss is summed over all of them.
- Section 5.7.2: stacked networks trained stage-wise (train stack 1; freeze it, add and train stack
  2; ...; then the whole stack jointly): ``fit_stagewise``.

Engineering the thesis does not cover but users need: atomic checkpoints (model, optimiser, step,
sampler position and every RNG state) so that a run killed at any step and resumed ends with
bit-identical weights on CPU; a JSON-lines history; a tqdm progress bar; mixed precision on CUDA;
data-parallel training under ``torchrun`` (DistributedDataParallel, gloo on CPU, nccl on CUDA; only
rank 0 writes files).

Datasets given to the trainer yield *prepared* items: dicts holding at least the network input
(``"image"``) and the target (``"heatmaps"``, or ``"mask"`` for face parsing); see
``fa_lib.data.pipeline.FanInputs``. Items that also carry ``"matrix"`` (image px -> heatmap px),
``"landmarks_image"`` and ``"box"`` are evaluated in image pixels with the NME of eq. 4.1.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from fa_lib import geometry
from fa_lib.atomic import atomic_torch_save, atomic_write_text  # atomic_torch_save: re-exported
from fa_lib.data.augment import flip_permutation
from fa_lib.device import resolve_device  # re-exported: fa_lib.train.resolve_device
from fa_lib.heatmaps import DECODERS, heatmap_coords_to_image, heatmaps_to_image_points
from fa_lib.metrics import nme_box
from fa_lib.profiles import OPTIMIZERS  # noqa: F401 - re-exported: fa_lib.train.OPTIMIZERS
from fa_lib.progress import TrainingReporter

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.jsonl"
CHECKPOINT_FORMAT = 1

LOSSES = ("l2", "sigmoid_bce", "log_softmax")


# --------------------------------------------------------------------------------------------------
# schedules of the thesis


def thesis_schedule(network: str = "fan") -> dict[str, Any]:
    """Optimiser settings of the thesis, as keyword arguments for ``Trainer``/``fit``.

    - ``"fan"``: 2D-FAN and 3D-FAN, section 4.3.2: RMSprop, lr 1e-4, batch 10, 40 epochs, lr x0.1
      after 15 and after 30 epochs.
    - ``"2d_to_3d"``: 2D-to-3D-FAN, section 4.3.2: the same procedure with initial lr 1e-3.
    - ``"binary"``: chapter 5, section 5.5.1: RMSprop, 55 epochs, lr 2.5e-4 dropped four times to
      5e-5, sigmoid cross-entropy (eq. 5.3). The thesis gives neither the epochs of the drops nor the
      batch size: here the drops are evenly spaced (after 1/5, 2/5, 3/5, 4/5 of the run) with the
      constant factor (5e-5 / 2.5e-4) ** (1/4), and the batch is the FAN's 10.

    Milestones are fractions of the whole run, so the same schedule scales to a shorter budget.
    """
    if network == "fan":
        return dict(optimizer="rmsprop", lr=1e-4, batch_size=10, epochs=40,
                    milestones=(15 / 40, 30 / 40), gamma=0.1, loss="l2")
    if network == "2d_to_3d":
        return dict(optimizer="rmsprop", lr=1e-3, batch_size=10, epochs=40,
                    milestones=(15 / 40, 30 / 40), gamma=0.1, loss="l2")
    if network == "binary":
        return dict(optimizer="rmsprop", lr=2.5e-4, batch_size=10, epochs=55,
                    milestones=(0.2, 0.4, 0.6, 0.8), gamma=(5e-5 / 2.5e-4) ** 0.25,
                    loss="sigmoid_bce")
    raise ValueError(f"unknown network {network!r} for thesis_schedule; choose fan, 2d_to_3d or binary")


def learning_rate_at(step: int, base_lr: float, milestone_steps: Sequence[int], gamma: float) -> float:
    """Step schedule: ``base_lr * gamma ** (number of milestones <= step)`` (0-based step)."""
    return base_lr * gamma ** sum(1 for m in milestone_steps if step >= m)


# --------------------------------------------------------------------------------------------------
# losses (summed over stacks: intermediate supervision)


def stack_outputs(outputs) -> list[torch.Tensor]:
    """A model's output as a list of per-stack tensors (a single tensor is a one-stack model)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)) and outputs and all(isinstance(o, torch.Tensor) for o in outputs):
        return list(outputs)
    raise TypeError("a model must return a tensor or a non-empty list/tuple of tensors (one per stack), "
                    f"got {type(outputs).__name__}")


def stacked_loss(outputs, target: torch.Tensor, kind: str = "l2",
                 supervised_stacks: int | None = None) -> torch.Tensor:
    """Loss summed over the stacks of a stacked network (intermediate supervision).

    - ``"l2"``: mean squared error between predicted and Gaussian target heatmaps (chapter 4).
    - ``"sigmoid_bce"``: binary cross-entropy between ``sigmoid(output)`` and the target confidence
      maps (eq. 5.3, section 5.5.1), computed from logits for numerical stability.
    - ``"log_softmax"``: per-pixel cross-entropy of the log-softmax class scores against an integer
      label map (face parsing, section 5.8); ``target`` is (B, H, W).

    Each term is averaged over its elements; eq. 5.3 sums over pixels instead, a constant factor
    that RMSprop's normalisation by the running gradient magnitude cancels (up to its epsilon).
    ``supervised_stacks`` = k keeps only the first k stacks (stage-wise training, section 5.7.2).
    """
    outs = stack_outputs(outputs)
    if supervised_stacks is not None:
        outs = outs[:supervised_stacks]
    total = None
    for i, out in enumerate(outs):
        out = out.float()
        if kind == "log_softmax":
            if out.dim() != target.dim() + 1 or out.shape[0] != target.shape[0] or out.shape[2:] != target.shape[1:]:
                raise ValueError(f"stack {i} output {tuple(out.shape)} does not match label map "
                                 f"{tuple(target.shape)} (expected (B, C, H, W) vs (B, H, W))")
            term = F.cross_entropy(out, target.long())
        else:
            if out.shape != target.shape:
                raise ValueError(f"stack {i} output {tuple(out.shape)} does not match target heatmaps "
                                 f"{tuple(target.shape)}")
            if kind == "l2":
                term = F.mse_loss(out, target.float())
            elif kind == "sigmoid_bce":
                term = F.binary_cross_entropy_with_logits(out, target.float())
            else:
                raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)} or pass a callable")
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------------------------------
# data: split, sampler


def split_train_val(dataset: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Subset, Subset]:
    """Hold out ``val_fraction`` of ``dataset`` for validation (section 4.3.2: 10% of 300-W-LP).

    The split is a deterministic function of ``seed`` and the dataset length; indices are sorted
    within each part. At least one item goes to each side when the fraction is strictly between 0
    and 1 and the dataset has two or more items.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(dataset)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(order[:n_val]).tolist()
    train_idx = np.sort(order[n_val:]).tolist()
    return Subset(dataset, train_idx), Subset(dataset, val_idx)


class EpochSampler(Sampler[int]):
    """Shuffled order that is a pure function of (seed, epoch), sharded over DDP ranks, resumable.

    Like ``DistributedSampler`` the order is padded (by wrapping round) to a multiple of the number
    of replicas and rank r takes every ``num_replicas``-th index from r. ``set_epoch(epoch, start)``
    also skips the first ``start`` indices of this rank's share, so that a run resumed in the middle
    of an epoch sees exactly the batches the interrupted run had not seen yet.
    """

    def __init__(self, length: int, *, seed: int = 0, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start = 0, 0

    @property
    def per_rank(self) -> int:
        return math.ceil(self.length / self.num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def order(self) -> list[int]:
        """This rank's indices for the current epoch (without skipping)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            indices = torch.randperm(self.length, generator=generator).tolist()
        else:
            indices = list(range(self.length))
        total = self.per_rank * self.num_replicas
        while len(indices) < total:
            indices += indices[: total - len(indices)]
        return indices[self.rank:total:self.num_replicas]

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return max(self.per_rank - self.start, 0)


def _set_dataset_epoch(dataset, epoch: int) -> None:
    """Tell a dataset (and a Subset's inner dataset) the epoch, for per-(epoch, index) augmentation."""
    while dataset is not None:
        setter = getattr(dataset, "set_epoch", None)
        if callable(setter):
            setter(epoch)
            return
        dataset = getattr(dataset, "dataset", None)


def _loader_generator(seed: int) -> torch.Generator:
    # A private generator: creating a DataLoader iterator otherwise draws its worker base seed from
    # the global torch RNG, which would make the model's RNG stream depend on where a run resumed.
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# distributed helpers


def _distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------
# RNG states and files


def _rng_state() -> dict[str, Any]:
    """Every RNG a training step may touch, in a form ``torch.load(weights_only=True)`` accepts."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _run_file(path: str | os.PathLike, name: str, what: str) -> Path:
    """``path`` itself, or ``path / name`` when ``path`` is a run's folder; it must exist."""
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}")
    return path


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``history.jsonl`` (a checkpoint folder or the file itself)."""
    path = _run_file(path, HISTORY_NAME, "training history")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``Trainer`` (a folder or the file); optionally load its weights
    into ``model``. Returns the whole checkpoint dict."""
    ckpt = torch.load(_run_file(path, CHECKPOINT_NAME, "checkpoint"), map_location="cpu", weights_only=True)
    if model is not None:
        _unwrap(model).load_state_dict(ckpt["model"])
    return ckpt


# --------------------------------------------------------------------------------------------------
# evaluation


@dataclass
class Evaluation:
    """Per-image predictions of a landmark model and their errors (``evaluate``).

    ``predictions``/``ground_truth`` are (M, N, 2) in image pixels (continuous coordinates, never
    rounded); ``scores`` (M, N) the heatmap maxima; ``nme`` (M,) the box-normalised NME of eq. 4.1
    (None when the items carry no ground truth); ``indices`` the dataset index of each row.
    """

    predictions: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    ground_truth: np.ndarray | None = None
    boxes: np.ndarray | None = None
    visibility: np.ndarray | None = None
    nme: np.ndarray | None = None
    loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_nme(self) -> float:
        if self.nme is None:
            raise ValueError("this evaluation has no ground truth, so no NME")
        return float(np.mean(self.nme))


def _unflip(values: np.ndarray, batch: Mapping[str, Any]) -> np.ndarray:
    """Rows of ``values`` (B, N, ...) of the items a batch flipped, back in the original landmark
    order (a flip permutation is its own inverse); a copy when anything changes."""
    if "flipped" not in batch:
        return values
    flipped = torch.as_tensor(batch["flipped"]).cpu().numpy().astype(bool)
    if not flipped.any():
        return values
    values = values.copy()
    values[flipped] = values[flipped][:, flip_permutation(values.shape[1])]
    return values


def _crop_affine(batch: Mapping[str, Any], heatmap_size: int) -> dict[str, np.ndarray]:
    """The keyword :func:`fa_lib.heatmaps.heatmap_coords_to_image` takes for a prepared batch: its
    ``"matrix"`` (image -> heatmap), else the heatmap -> image map of its ``"center"``/``"scale"``."""
    if "matrix" in batch:
        return {"matrix": batch["matrix"]}
    if "center" in batch and "scale" in batch:
        return {"inverse": geometry.uncrop_matrix(np.asarray(batch["center"]), np.asarray(batch["scale"]),
                                                  heatmap_size)}
    raise ValueError("cannot map heatmap points to the image: the items carry neither 'matrix' nor "
                     "'center'/'scale'")


def heatmap_points_to_image(points: torch.Tensor | np.ndarray, batch: Mapping[str, Any],
                            heatmap_size: int) -> np.ndarray:
    """Map decoded points (B, N, 2) from heatmap px back to image px for a prepared batch.

    Uses the batch's ``"matrix"`` (image -> heatmap affine, including any rotation and flip the
    pipeline applied) when present, else ``"center"``/``"scale"`` with ``geometry.uncrop_matrix``
    (both through :func:`fa_lib.heatmaps.heatmap_coords_to_image`). A flipped item's points are
    permuted back to the original landmark order. Returns float32 (B, N, 2).
    """
    return _unflip(heatmap_coords_to_image(points, **_crop_affine(batch, heatmap_size)), batch)


@torch.no_grad()
def _validation_pass(model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
                     input_key: str, loss_fn: Callable | None, decode: bool, num_workers: int,
                     amp: bool, progress: bool, seed: int = 0, stack: int = -1,
                     decoder: str = "quarter") -> Evaluation:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=_loader_generator(seed))
    was_training = model.training
    model.eval()
    preds, scores, gts, boxes, vis, indices = [], [], [], [], [], []
    loss_sum, loss_count, offset = 0.0, 0, 0
    try:
        from tqdm.auto import tqdm

        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch = _to_device(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                outputs = model(batch[input_key])
            n = batch[input_key].shape[0]
            if loss_fn is not None:
                loss_sum += float(loss_fn(outputs, batch)) * n
                loss_count += n
            if decode:
                last = stack_outputs(outputs)[stack].float()
                points, score = heatmaps_to_image_points(last, **_crop_affine(batch, last.shape[-1]),
                                                         decoder=decoder)
                preds.append(_unflip(points, batch))
                scores.append(score)
                if "landmarks_image" in batch:
                    gts.append(batch["landmarks_image"].cpu().numpy())
                if "box" in batch:
                    boxes.append(batch["box"].cpu().numpy())
                if "visibility" in batch:  # back to the original label order, as the points
                    vis.append(_unflip(batch["visibility"].cpu().numpy(), batch))
            idx = batch.get("index")
            indices.append(idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.arange(offset, offset + n))
            offset += n
    finally:
        model.train(was_training)
    if not indices:
        raise ValueError("cannot evaluate on an empty dataset")
    result = Evaluation(
        predictions=np.concatenate(preds) if preds else np.zeros((0, 0, 2), np.float32),
        scores=np.concatenate(scores) if scores else np.zeros((0, 0), np.float32),
        indices=np.concatenate(indices),
        loss=(loss_sum / loss_count) if loss_count else None,
    )
    if gts:
        result.ground_truth = np.concatenate(gts)
        result.boxes = np.concatenate(boxes) if len(boxes) == len(gts) else None
        result.visibility = np.concatenate(vis) if len(vis) == len(gts) else None
        result.nme = np.asarray(nme_box(result.predictions, result.ground_truth, result.boxes),
                                dtype=np.float64)
    return result


def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 16, device: str = "auto",
             input_key: str = "image", loss: str | Callable | None = None, num_workers: int = 0,
             amp: bool = False, progress: bool = False, stack: int = -1, decoder: str = "quarter") -> Evaluation:
    """Run a landmark model over prepared items and return per-image predictions in image pixels.

    The last stack's heatmaps are decoded to image pixels (``decoder``: ``"quarter"``, argmax +
    quarter-pixel refinement, or ``"subpixel"``, the sub-pixel fit; then the inverse of the crop's
    affine: ``fa_lib.heatmaps.heatmaps_to_image_points``) and
    compared with ``"landmarks_image"`` by the box-normalised NME of eq. 4.1 (``metrics.nme_box``,
    normalised by the ground-truth ``"box"``). ``loss`` (a name of ``LOSSES`` or a callable
    ``loss(outputs, batch)``) also reports the mean loss. ``stack`` picks the decoded output of a
    stacked model (default the last). The model's train/eval mode is restored.
    """
    dev = resolve_device(device)
    model.to(dev)
    loss_fn = _make_loss_fn(loss, None, None) if loss is not None else None
    return _validation_pass(model, dataset, batch_size=batch_size, device=dev, input_key=input_key,
                            loss_fn=loss_fn, decode=True, num_workers=num_workers,
                            amp=amp and dev.type == "cuda", progress=progress, stack=stack, decoder=decoder)


def _make_loss_fn(loss: str | Callable, target_key: str | None,
                  supervised_stacks: int | None) -> Callable[[Any, Mapping[str, Any]], torch.Tensor]:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)} or pass a callable")
    key = target_key or ("mask" if loss == "log_softmax" else "heatmaps")

    def loss_fn(outputs, batch):
        if key not in batch:
            raise ValueError(f"loss {loss!r} needs the target {key!r} in every item; the item has "
                             f"{sorted(batch)}")
        return stacked_loss(outputs, batch[key], loss, supervised_stacks)

    return loss_fn


# --------------------------------------------------------------------------------------------------
# the trainer


#: fault injection for the tests of resumption: with this variable set to N, the process ends abruptly
#: (status :data:`EXIT_AFTER_STEP_STATUS`, nothing cleaned up) right after optimiser step N and its checkpoint
EXIT_AFTER_STEP_ENV = "FA_LIB_EXIT_AFTER_STEP"
EXIT_AFTER_STEP_STATUS = 75


def gather_per_rank(trainer: Any, own: dict[str, Any]) -> list[Any]:
    """What differs between processes (RNG streams, partial sums), one entry per rank: gathered from
    every process under ``torchrun``, this process's alone otherwise. Shared by both trainers' checkpoints."""
    if not trainer.distributed:
        return [own]
    per_rank: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(per_rank, own)
    return per_rank


def check_resume_settings(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse to resume from ``path`` when the run's settings differ from the checkpoint's (compared as
    JSON, so tuples and lists agree), naming each changed setting."""
    saved, current = json.loads(json.dumps(saved, default=str)), json.loads(json.dumps(current, default=str))
    different = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if different:
        raise ValueError(f"cannot resume from {path}: the run's settings changed "
                         f"({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in different.items())}); "
                         "use another checkpoint_dir or resume=False")


class StopTraining(Exception):
    """Raised by a callback to end ``fit`` early (the last checkpoint stays valid for resuming)."""


def run_epochs(trainer: Any, train_batch: Callable[[Mapping[str, Any]], float], bar: Any, reporter: Any,
               on_epoch_start: Callable[[], None] | None = None) -> None:
    """The epoch loop every trainer of the project shares (:class:`Trainer`,
    :class:`fa_lib.adversarial.SuperFanTrainer`): until ``trainer.total_steps`` optimiser steps, each
    epoch's share of the data in the sampler's epoch-seeded order (resuming mid-epoch at
    ``batch_in_epoch``), ``train_batch(batch) -> loss`` per batch, ``trainer._end_epoch(started)`` at the
    end of an epoch (or of the budget), ``trainer._save()`` every ``checkpoint_every`` steps in between,
    then the callbacks (which may raise :class:`StopTraining`). ``on_epoch_start`` runs at the start of
    every epoch and after each end of epoch. The last loss is kept in ``trainer.last_loss``."""
    while trainer.step < trainer.total_steps:
        started = time.perf_counter()
        trainer.sampler.set_epoch(trainer.epoch, start=trainer.batch_in_epoch * trainer.batch_size)
        _set_dataset_epoch(trainer.train_set, trainer.epoch)
        if on_epoch_start is not None:
            on_epoch_start()
        for batch in trainer.loader:
            trainer.last_loss = train_batch(batch)
            trainer.step += 1
            trainer.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{trainer.last_loss:.4g}", epoch=trainer.epoch + 1)
            if reporter is not None:
                reporter.update(trainer.step, trainer.last_loss)
            epoch_done = trainer.batch_in_epoch >= trainer.steps_per_epoch or trainer.step >= trainer.total_steps
            if epoch_done:
                trainer._end_epoch(started)
                if on_epoch_start is not None:
                    on_epoch_start()
            elif trainer.checkpoint_every and trainer.step % trainer.checkpoint_every == 0:
                trainer._save()
            for callback in trainer.callbacks:
                callback(trainer)
            if os.environ.get(EXIT_AFTER_STEP_ENV) == str(trainer.step):
                os._exit(EXIT_AFTER_STEP_STATUS)  # fault injection: as if killed, right after this step
            if epoch_done:
                break


class Trainer:
    """Train any model of the project on prepared items (see the module docstring).

    Parameters (keyword-only after the datasets):

    - ``loss``: ``"l2"`` | ``"sigmoid_bce"`` | ``"log_softmax"`` or ``callable(outputs, batch)``;
      summed over every stack the model returns (``supervised_stacks`` keeps the first k).
    - ``optimizer``: ``"rmsprop"`` (thesis; torch defaults alpha 0.99, eps 1e-8 as Torch7's
      ``optim.rmsprop``), ``"adam"``, ``"sgd"`` (momentum 0.9); ``lr``, ``weight_decay``.
    - ``milestones``/``gamma``: lr multiplied by ``gamma`` after each milestone, milestones given as
      fractions of the run in (0, 1) (``thesis_schedule`` returns the thesis's).
    - ``epochs`` or ``iterations`` (optimiser steps; overrides epochs), ``batch_size`` (per process).
    - ``device``: ``"auto"`` | ``"cpu"`` | ``"cuda"``; ``amp``: float16 autocast + GradScaler, used
      only on CUDA (ignored with a warning elsewhere). ``cpu_bf16``: bfloat16 autocast of the forward
      pass and the loss on a CPU (weights, gradients and the optimiser stay float32; the CPU's
      AVX512-BF16 or AMX units do the matrix products), ignored with a warning elsewhere.
      ``channels_last``: the model and its image inputs in channels-last memory (faster convolutions
      on CPUs; the same function, rounded differently).
    - ``checkpoint_dir``: where ``last.pt`` and ``history.jsonl`` go (None: nothing is written);
      ``checkpoint_every``: also checkpoint every this many steps (always at the end of each epoch);
      ``resume``: continue from ``checkpoint_dir/last.pt`` if it exists.
    - ``seed``: seeds Python, numpy and torch at the start of a fresh run and orders the data.
    - ``metrics_fn``: ``callable(model, val_set) -> dict`` of extra per-epoch metrics (rank 0).
    - ``trainable_modules``: train only these sub-modules (others frozen, and their batch-norm
      statistics too); used by ``fit_stagewise``.
    - ``val_decoder``: how the per-epoch validation NME decodes heatmaps (``fa_lib.heatmaps.DECODERS``).
    - ``callbacks``: ``callable(trainer)`` after each step (and after its checkpoint); may raise
      ``StopTraining``.
    - ``decode_landmarks``: decode the (last) output's heatmaps into landmarks for the per-epoch
      validation NME (None: for the ``"l2"`` and ``"sigmoid_bce"`` losses only).
    - ``name``: the network's name in progress reports (``$FA_LIB_PROGRESS``, read by ``fa-lib
      reproduce``: :class:`fa_lib.progress.TrainingReporter`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each
    process takes its share of every epoch (``EpochSampler``) and only rank 0 validates and writes.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, *,
                 loss: str | Callable = "l2", optimizer: str = "rmsprop", lr: float = 1e-4,
                 weight_decay: float = 0.0, milestones: Sequence[float] = (), gamma: float = 0.1,
                 batch_size: int = 10, epochs: int | None = None, iterations: int | None = None,
                 device: str | torch.device = "auto", amp: bool = False, cpu_bf16: bool = False,
                 channels_last: bool = False,
                 checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                 resume: bool = True, seed: int = 0, metrics_fn: Callable | None = None,
                 progress: bool = True, num_workers: int = 0, input_key: str = "image",
                 target_key: str | None = None, supervised_stacks: int | None = None,
                 trainable_modules: Iterable[nn.Module] | None = None, grad_clip: float | None = None,
                 val_batch_size: int | None = None, callbacks: Sequence[Callable] = (),
                 history_extra: Mapping[str, Any] | None = None, val_decoder: str = "quarter",
                 name: str | None = None, decode_landmarks: bool | None = None):
        if val_decoder not in DECODERS:
            raise ValueError(f"val_decoder must be one of {DECODERS}, got {val_decoder!r}")
        if epochs is None and iterations is None:
            raise ValueError("give the training budget: epochs= or iterations=")
        if epochs is not None and epochs <= 0 or iterations is not None and iterations <= 0:
            raise ValueError(f"epochs and iterations must be positive, got epochs={epochs}, iterations={iterations}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        milestones = tuple(float(m) for m in milestones)
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing fractions of the run in (0, 1), got {milestones}")
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        self.model = model
        self.train_set, self.val_set = train_set, val_set
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        self.loss_fn = _make_loss_fn(loss, target_key, supervised_stacks)
        self.optimizer_name, self.lr, self.weight_decay = optimizer, float(lr), float(weight_decay)
        self.milestones, self.gamma = milestones, float(gamma)
        self.batch_size, self.epochs, self.iterations = int(batch_size), epochs, iterations
        self.device_request, self.amp_request = device, bool(amp)
        self.cpu_bf16_request, self.channels_last = bool(cpu_bf16), bool(channels_last)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.resume = checkpoint_every, resume
        self.seed, self.metrics_fn, self.progress = int(seed), metrics_fn, progress
        self.num_workers, self.input_key = num_workers, input_key
        # a callable loss says nothing about the outputs: heatmaps are decoded when asked to
        self.decode_landmarks = (loss in ("l2", "sigmoid_bce")) if decode_landmarks is None else bool(decode_landmarks)
        # stage k of a stage-wise run is judged by the k-th output, the last one it supervises
        self.eval_stack = supervised_stacks - 1 if supervised_stacks is not None else -1
        self.trainable_modules = list(trainable_modules) if trainable_modules is not None else None
        self.grad_clip, self.callbacks = grad_clip, list(callbacks)
        self.val_batch_size = val_batch_size or batch_size
        self.history_extra = dict(history_extra or {})
        self.val_decoder = val_decoder
        self.name = name or type(model).__name__
        # run state (what a checkpoint stores)
        self.step = 0              # optimiser steps done
        self.epoch = 0             # epoch in progress (0-based)
        self.batch_in_epoch = 0    # batches of this epoch done by this process
        self.loss_sum, self.loss_count = 0.0, 0
        self.last_loss: float | None = None
        self.history: list[dict[str, Any]] = []

    # -- set-up ------------------------------------------------------------------------------------

    def _setup(self) -> None:
        self.rank, self.world_size, local_rank = _distributed_env()
        self.distributed = self.world_size > 1
        self._own_process_group = False
        if self.device_request == "auto" and self.distributed and torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = resolve_device(self.device_request)
            if self.device.type == "cuda" and self.device.index is None and self.distributed:
                self.device = torch.device("cuda", local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self._own_process_group = True
        self.amp = self.amp_request and self.device.type == "cuda"
        if self.amp_request and not self.amp:
            warnings.warn("amp=True is only used on CUDA; training in float32 on "
                          f"{self.device.type}", stacklevel=3)
        self.cpu_bf16 = self.cpu_bf16_request and self.device.type == "cpu"
        if self.cpu_bf16_request and not self.cpu_bf16:
            warnings.warn(f"cpu_bf16=True is only used on a CPU; ignored on {self.device.type}", stacklevel=3)
        elif self.cpu_bf16 and not cpu_has_bf16():
            # emulated bfloat16 is slower than float32: nothing to gain
            warnings.warn("cpu_bf16=True: this CPU has no bfloat16 units (AVX512-BF16 or AMX); "
                          "training in float32", stacklevel=3)
            self.cpu_bf16 = False

        model = self.model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._frozen: list[torch.nn.Parameter] = []
        self._frozen_modules: list[nn.Module] = []
        if self.trainable_modules is not None:
            trainable = {id(p) for m in self.trainable_modules for p in m.parameters()}
            if not trainable:
                raise ValueError("trainable_modules hold no parameters")
            for p in model.parameters():
                if id(p) not in trainable and p.requires_grad:
                    p.requires_grad_(False)
                    self._frozen.append(p)
            # modules with state of their own (batch norm) whose parameters are all frozen stay in
            # eval mode, so "frozen" also freezes their running statistics (section 5.7.2)
            for m in model.modules():
                own = list(m.parameters(recurse=False))
                if (own or list(m.buffers(recurse=False))) and not any(id(p) in trainable for p in own):
                    self._frozen_modules.append(m)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        if self.optimizer_name == "rmsprop":
            self.optimizer = torch.optim.RMSprop(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adam":
            self.optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.distributed:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.ddp_model = model

        self.sampler = EpochSampler(len(self.train_set), seed=self.seed, shuffle=True,
                                    num_replicas=self.world_size, rank=self.rank)
        self.steps_per_epoch = math.ceil(self.sampler.per_rank / self.batch_size)
        self.total_steps = (int(self.iterations) if self.iterations is not None
                            else int(self.epochs) * self.steps_per_epoch)
        self.milestone_steps = [int(round(m * self.total_steps)) for m in self.milestones]
        self.loader = DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler,
                                 num_workers=self.num_workers, generator=_loader_generator(self.seed),
                                 pin_memory=self.device.type == "cuda", drop_last=False)

        resumed = False
        if self.resume and self.checkpoint_dir is not None and (self.checkpoint_dir / CHECKPOINT_NAME).exists():
            self._load(self.checkpoint_dir / CHECKPOINT_NAME)
            resumed = True
        if not resumed:
            _seed_everything(self.seed + self.rank)

    def _config(self) -> dict[str, Any]:
        """Settings that must agree between a checkpoint and the run resuming from it."""
        return {"loss": self.loss_name, "optimizer": self.optimizer_name, "lr": self.lr,
                "milestones": list(self.milestones), "gamma": self.gamma,
                "batch_size": self.batch_size, "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world_size,
                "seed": self.seed, "train_size": len(self.train_set)}

    # -- checkpoints -------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.checkpoint_dir is None:  # the same on every rank, so the collectives below match
            return
        # what differs between processes: RNG streams and the partial sums of this epoch's loss
        per_rank = gather_per_rank(self, {"rng": _rng_state(), "loss_sum": self.loss_sum,
                                          "loss_count": self.loss_count})
        if self.rank == 0:
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT,
                "model": _unwrap(self.ddp_model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "history": self.history, "per_rank": per_rank, "config": self._config(),
            }, self.checkpoint_dir / CHECKPOINT_NAME)
        if self.distributed:
            dist.barrier()

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a checkpoint of this trainer (format {ckpt.get('format')})")
        check_resume_settings(path, ckpt["config"], self._config())
        _unwrap(self.ddp_model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        own = ckpt["per_rank"][self.rank]
        self.loss_sum, self.loss_count = own["loss_sum"], own["loss_count"]
        self.history = list(ckpt["history"])
        _set_rng_state(own["rng"])

    def _write_history(self) -> None:
        if self.rank == 0 and self.checkpoint_dir is not None:
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.history)
            atomic_write_text(self.checkpoint_dir / HISTORY_NAME, text)

    # -- the loop ----------------------------------------------------------------------------------

    def _set_train_mode(self) -> None:
        self.ddp_model.train()
        for m in self._frozen_modules:
            m.eval()

    def _train_step(self, batch: Mapping[str, Any]) -> float:
        lr = learning_rate_at(self.step, self.lr, self.milestone_steps, self.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = _to_device(batch, self.device)
        if self.input_key not in batch:
            raise ValueError(f"the training items have no input {self.input_key!r}; they have {sorted(batch)}")
        inputs = batch[self.input_key]
        if self.channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if self.cpu_bf16:
            autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        else:
            autocast = torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)
        with autocast:
            outputs = self.ddp_model(inputs)
            if self.cpu_bf16:  # the loss in float32, on bfloat16 heatmaps
                outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
            loss = self.loss_fn(outputs, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at step {self.step} (lr {lr:g}); "
                                     "lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

    def _end_epoch(self, started: float) -> None:
        loss_sum, loss_count = self.loss_sum, self.loss_count
        if self.distributed:
            totals = torch.tensor([loss_sum, float(loss_count)], dtype=torch.float64)
            dist.all_reduce(totals)
            loss_sum, loss_count = float(totals[0]), int(totals[1])
        record: dict[str, Any] = {
            **self.history_extra,
            "epoch": self.epoch + 1, "step": self.step,
            "lr": learning_rate_at(self.step - 1, self.lr, self.milestone_steps, self.gamma),
            "train_loss": loss_sum / max(loss_count, 1),
            "epoch_time_s": round(time.perf_counter() - started, 3),
        }
        if self.rank == 0 and self.val_set is not None and len(self.val_set) > 0:
            model = _unwrap(self.ddp_model)
            ev = _validation_pass(model, self.val_set, batch_size=self.val_batch_size, device=self.device,
                                  input_key=self.input_key, loss_fn=self.loss_fn,
                                  decode=self.decode_landmarks and self._has_landmark_targets(),
                                  num_workers=self.num_workers, amp=self.amp, progress=False,
                                  seed=self.seed, stack=self.eval_stack, decoder=self.val_decoder)
            record["val_loss"] = ev.loss
            if ev.nme is not None:
                record["val_nme"] = ev.mean_nme
            if self.metrics_fn is not None:
                was_training = model.training
                model.eval()
                try:
                    with torch.no_grad():
                        record.update({k: _jsonable(v) for k, v in self.metrics_fn(model, self.val_set).items()})
                finally:
                    model.train(was_training)
        self.history.append(record)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self._write_history()
        self._save()

    def _has_landmark_targets(self) -> bool:
        try:
            item = self.val_set[0]
        except Exception:  # noqa: BLE001 - an odd dataset simply gets no NME
            return False
        return isinstance(item, Mapping) and "landmarks_image" in item and (
            "matrix" in item or ("center" in item and "scale" in item))

    def fit(self) -> list[dict[str, Any]]:
        """Train to the budget (resuming if a checkpoint exists) and return the per-epoch history."""
        from tqdm.auto import tqdm

        self._setup()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not self.progress or self.rank != 0, dynamic_ncols=True)
        reporter = TrainingReporter(self.name, self.total_steps) if self.rank == 0 else None
        def train_batch(batch: Mapping[str, Any]) -> float:
            value = self._train_step(batch)
            n = batch[self.input_key].shape[0]
            self.loss_sum += value * n
            self.loss_count += n
            return value

        try:
            run_epochs(self, train_batch, bar, reporter, on_epoch_start=self._set_train_mode)
        except StopTraining:
            pass
        finally:
            bar.close()
            if reporter is not None:
                reporter.update(self.step, self.last_loss, done=True)
            for p in self._frozen:
                p.requires_grad_(True)
            if self._own_process_group:
                dist.destroy_process_group()
        return self.history


def cpu_has_bf16() -> bool:
    """Does this CPU multiply bfloat16 matrices natively (AVX512-BF16 or AMX tiles)?"""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return value


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, **kwargs) -> list[dict[str, Any]]:
    """Train ``model`` in place with a ``Trainer`` built from ``kwargs``; return the history."""
    return Trainer(model, train_set, val_set, **kwargs).fit()


# --------------------------------------------------------------------------------------------------
# stage-wise training of stacked networks (section 5.7.2)

_FAN_STACK_PART = re.compile(r"^(?:m|top_m_|conv_last|bn_end|l)(\d+)$")
_FAN_STACK_LINK = re.compile(r"^(?:bl|al)(\d+)$")


def fan_stack_modules(model: nn.Module, stack: int) -> list[nn.Module]:
    """The sub-modules that belong to stack ``stack`` (0-based) of a FAN-style stacked network.

    Uses the official FAN module names: stack i is ``m{i}``, ``top_m_{i}``,
    ``conv_last{i}``, ``bn_end{i}``, ``l{i}``, plus the links ``bl{i-1}``/``al{i-1}`` that feed it
    from the previous stack; stack 0 also owns every other child (the stem).
    """
    model = _unwrap(model)
    owner: dict[str, int] = {}
    for name, _ in model.named_children():
        part, link = _FAN_STACK_PART.match(name), _FAN_STACK_LINK.match(name)
        if part:
            owner[name] = int(part.group(1))
        elif link:
            owner[name] = int(link.group(1)) + 1
    if not owner:
        raise ValueError(f"{type(model).__name__} has no FAN-style stack modules (m0, top_m_0, l0, ...); "
                         "pass stage_modules= to fit_stagewise")
    n_stacks = max(owner.values()) + 1
    if not 0 <= stack < n_stacks:
        raise ValueError(f"stack {stack} out of range for a {n_stacks}-stack model")
    return [module for name, module in model.named_children() if owner.get(name, 0) == stack]


def fit_stagewise(model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, *,
                  num_stacks: int, stage_budget: Mapping[str, int], joint_budget: Mapping[str, int],
                  stage_modules: Callable[[nn.Module, int], list[nn.Module]] = fan_stack_modules,
                  checkpoint_dir: str | os.PathLike | None = None, **trainer_kwargs) -> list[dict[str, Any]]:
    """Section 5.7.2: train stack 1 alone; then, for k = 2..K, freeze stacks < k and train stack k
    (supervising the first k outputs); finally train the whole stack jointly.

    ``stage_budget``/``joint_budget`` are ``{"epochs": n}`` or ``{"iterations": n}`` (the thesis:
    each stage "until convergence", the joint phase 50 epochs). Each phase is a ``Trainer`` with its
    own sub-folder of ``checkpoint_dir`` (``stage1`` ... ``joint``), so an interrupted run resumes in
    the phase it was in. Returns the concatenated history; records carry ``"phase"``.
    Frozen stacks keep their batch-norm statistics; later stacks are still computed in the forward
    pass of early phases (their outputs are simply not supervised).
    """
    for name, budget in (("stage_budget", stage_budget), ("joint_budget", joint_budget)):
        if set(budget) - {"epochs", "iterations"} or not budget:
            raise ValueError(f"{name} must be {{'epochs': n}} or {{'iterations': n}}, got {dict(budget)}")
    history: list[dict[str, Any]] = []
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    for k in range(1, num_stacks + 1):
        phase = f"stage{k}"
        history += fit(model, train_set, val_set, **trainer_kwargs, **stage_budget,
                       trainable_modules=stage_modules(model, k - 1), supervised_stacks=k,
                       checkpoint_dir=root / phase if root else None, history_extra={"phase": phase})
    history += fit(model, train_set, val_set, **trainer_kwargs, **joint_budget,
                   checkpoint_dir=root / "joint" if root else None, history_extra={"phase": "joint"})
    return history
