"""Super-FAN's training loop (thesis section 6.2.5): several networks, several optimisers.

The stages of section 6.2.5 are :class:`SRStage` records (:data:`STAGES`): the generator alone with
the pixel loss (eq. 6.1), then + the feature loss (eq. 6.2), then + the heatmap loss (eq. 6.4)
against a frozen teacher FAN on the high-resolution face, then + the WGAN-GP term (eq. 6.3, critic
and generator updated alternately, one critic step per generator step as the thesis says), then end
to end with the student FAN trained too. Each weighted term of eq. 6.5 is logged.

:class:`SuperFanTrainer` keeps the guarantees of :class:`fa_lib.train.Trainer`: one atomic
checkpoint holding every trained network, every optimiser, the AMP scaler and every RNG, so that a
killed run resumed from it ends with the same weights as an uninterrupted one (tested); the same
epoch-seeded data order; mixed precision on CUDA; progress through ``$FA_LIB_PROGRESS``; under
``torchrun`` (``WORLD_SIZE`` > 1) every trained network is wrapped in DistributedDataParallel, each
process takes its share of every epoch and rank 0 writes the checkpoint (with every rank's RNG).
With DDP each network is run through its wrapper once per backward pass: the critic scores the real,
generated and interpolated images in one batch (it has no batch normalisation, so batching them
changes nothing), and a network that only passes gradients on (the critic in the generator's step)
is called unwrapped.
Per network: only the networks of the current update have ``requires_grad``; frozen networks (the
teacher FAN, the feature network, the student FAN before the end-to-end stage) stay in eval mode.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from fa_lib.atomic import atomic_torch_save, atomic_write_text
from fa_lib.device import resolve_device
from fa_lib.models.superfan import (GP_WEIGHT, LOSS_WEIGHTS, critic_loss, dcgan_critic_loss, dcgan_generator_loss,
                                    feature_loss, generator_adversarial_loss, heatmap_loss, pixel_loss)
from fa_lib.profiles import OPTIMIZERS
from fa_lib.progress import TrainingReporter
from fa_lib.train import (EpochSampler, StopTraining, _distributed_env, _loader_generator, _rng_state,
                          _seed_everything, _set_rng_state, _to_device, check_resume_settings, cpu_has_bf16,
                          gather_per_rank, learning_rate_at, run_epochs, stack_outputs)

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.jsonl"
CHECKPOINT_FORMAT = "fa_lib.adversarial/1"
TRAINED = ("generator", "critic", "student")
GAN_KINDS = ("wgan-gp", "dcgan")


@dataclass(frozen=True)
class SRStage:
    """Which terms of eq. 6.5 a stage uses and whether the student FAN trains (the end-to-end stage).
    ``pixel_kind`` l2 | l1 (Table 6.3), ``heatmap_kind`` l2 | l1 (Table 6.5); ``gan`` "wgan-gp"
    (eq. 6.3, Super-FAN) or "dcgan" (sigmoid cross-entropy: the SR-GAN baseline)."""

    name: str
    pixel: bool = True
    feature: bool = False
    heatmap: bool = False
    adversarial: bool = False
    train_student: bool = False
    pixel_kind: str = "l2"
    heatmap_kind: str = "l2"
    gan: str = "wgan-gp"

    def __post_init__(self) -> None:
        if not (self.pixel or self.feature or self.heatmap or self.adversarial):
            raise ValueError(f"stage {self.name!r} uses no loss")
        if self.train_student and not self.heatmap:
            raise ValueError(f"stage {self.name!r} trains the student FAN without the heatmap loss")
        if self.pixel_kind not in ("l2", "l1") or self.heatmap_kind not in ("l2", "l1"):
            raise ValueError(f"loss kinds are l2 or l1, got {self.pixel_kind!r}, {self.heatmap_kind!r}")
        if self.gan not in GAN_KINDS:
            raise ValueError(f"gan must be one of {GAN_KINDS}, got {self.gan!r}")

    def needs(self) -> set[str]:
        """The networks this stage needs besides the generator."""
        return ({"features"} if self.feature else set()) | ({"student", "teacher"} if self.heatmap else set()) | (
            {"critic"} if self.adversarial else set())


#: the stages of section 6.2.5, in order (the thesis's row names of Tables 6.1/6.2)
STAGES = {
    "pixel": SRStage("pixel"),
    "pixel-feature": SRStage("pixel-feature", feature=True),
    "pixel-feature-heatmap": SRStage("pixel-feature-heatmap", feature=True, heatmap=True),
    "gan": SRStage("gan", feature=True, heatmap=True, adversarial=True),
    "super-fan": SRStage("super-fan", feature=True, heatmap=True, adversarial=True, train_student=True),
}


def _optimizer(name: str, params: Sequence[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _set_trainable(module: nn.Module | None, on: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(on)


class SuperFanTrainer:
    """Train the generator (and the critic and student FAN when the stage has them).

    ``generator``: 16 -> 64 px; ``train_set`` yields dicts with ``input_key`` (low-resolution images)
    and ``target_key`` (high-resolution images), both in [0, 1]. ``critic``, ``student``, ``teacher``
    (a frozen copy of the FAN: the heatmap targets), ``features`` (a frozen feature network,
    :class:`fa_lib.models.superfan.ResNet50Features`): as the stage needs. ``fan_input``: maps a 64 px
    image to the FANs' input (e.g. a differentiable bilinear x4 upsampling); identity by default.
    ``weights``: eq. 6.5's (``LOSS_WEIGHTS``); ``gp_weight``: WGAN-GP's lambda. ``optimizer`` and
    ``lr`` for every trained network (``critic_lr``/``student_lr`` override), the lr multiplied by
    ``gamma`` at ``milestones`` (fractions of the run). ``iterations`` optimiser steps of the
    generator, ``batch_size``, ``seed``, ``device``, ``amp`` (CUDA only), ``cpu_bf16`` (bfloat16
    autocast of the generator's update on a CPU with bfloat16 units; the critic's update, with its
    gradient penalty, stays float32), ``checkpoint_dir``,
    ``checkpoint_every``, ``resume``, ``callbacks``, ``progress``, ``name``.
    """

    def __init__(self, generator: nn.Module, train_set: Dataset, stage: SRStage | str, *,
                 critic: nn.Module | None = None, student: nn.Module | None = None, teacher: nn.Module | None = None,
                 features: nn.Module | None = None, fan_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 weights: Mapping[str, float] = LOSS_WEIGHTS, gp_weight: float = GP_WEIGHT,
                 optimizer: str = "rmsprop", lr: float = 2.5e-4, critic_lr: float | None = None,
                 student_lr: float | None = None, milestones: Sequence[float] = (), gamma: float = 0.1,
                 batch_size: int = 16, iterations: int = 1000, seed: int = 0, device: str | torch.device = "auto",
                 amp: bool = False, cpu_bf16: bool = False, checkpoint_dir: str | os.PathLike | None = None,
                 checkpoint_every: int | None = None, resume: bool = True, callbacks: Sequence[Callable] = (),
                 progress: bool = False, name: str = "Super-FAN", input_key: str = "image_lr",
                 target_key: str = "image_hr"):
        self.stage = STAGES[stage] if isinstance(stage, str) else stage
        networks = {"critic": critic, "student": student, "teacher": teacher, "features": features}
        missing = sorted(k for k in self.stage.needs() if networks[k] is None)
        if missing:
            raise ValueError(f"stage {self.stage.name!r} needs the {', '.join(missing)} network(s)")
        if iterations <= 0 or batch_size <= 0:
            raise ValueError(f"iterations and batch_size must be positive, got {iterations}, {batch_size}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        self.rank, self.world_size, local_rank = _distributed_env()
        self.distributed = self.world_size > 1
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", local_rank)
        self._own_group = False
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self._own_group = True
        self.generator = generator.to(self.device)
        self.critic = critic.to(self.device) if critic is not None and self.stage.adversarial else None
        self.student = student.to(self.device) if student is not None and self.stage.heatmap else None
        self.teacher = teacher.to(self.device) if teacher is not None and self.stage.heatmap else None
        self.features = features.to(self.device) if features is not None and self.stage.feature else None
        self.fan_input = fan_input or (lambda images: images)
        self.weights = dict(weights)
        self.gp_weight = float(gp_weight)
        self.train_set, self.batch_size, self.total_steps = train_set, int(batch_size), int(iterations)
        self.seed, self.milestones, self.gamma = int(seed), tuple(float(m) for m in milestones), float(gamma)
        self.milestone_steps = [int(round(m * self.total_steps)) for m in self.milestones]
        self.amp = bool(amp) and self.device.type == "cuda"
        self.cpu_bf16 = bool(cpu_bf16) and self.device.type == "cpu" and cpu_has_bf16()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.resume, self.callbacks = checkpoint_every, resume, list(callbacks)
        self.progress, self.name = progress, name
        self.input_key, self.target_key = input_key, target_key
        self.lrs = {"generator": float(lr), "critic": float(critic_lr or lr), "student": float(student_lr or lr)}
        self.optimizer_name = optimizer
        for frozen in (self.teacher, self.features):
            if frozen is not None:
                _set_trainable(frozen, False)
                frozen.eval()
        self.optimizers = {"generator": _optimizer(optimizer, list(self.generator.parameters()), self.lrs["generator"])}
        if self.critic is not None:
            self.optimizers["critic"] = _optimizer(optimizer, list(self.critic.parameters()), self.lrs["critic"])
        if self.student is not None and self.stage.train_student:
            self.optimizers["student"] = _optimizer(optimizer, list(self.student.parameters()), self.lrs["student"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.wrapped = {name: self._wrap(net) for name, net in self.trained().items()}
        self.sampler = EpochSampler(len(train_set), seed=self.seed, shuffle=True, num_replicas=self.world_size,
                                    rank=self.rank)
        self.steps_per_epoch = math.ceil(self.sampler.per_rank / self.batch_size)
        self.loader = DataLoader(train_set, batch_size=self.batch_size, sampler=self.sampler,
                                 generator=_loader_generator(self.seed), drop_last=False)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last_loss: float | None = None
        self.history: list[dict[str, Any]] = []

    # -- the networks of each update ---------------------------------------------------------------

    def _wrap(self, net: nn.Module) -> nn.Module:
        if not self.distributed:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        # parameters whose requires_grad is off in an update (the other networks') count as unused
        return nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)

    def trained(self) -> dict[str, nn.Module]:
        """The networks this stage trains, by name."""
        nets = {"generator": self.generator}
        if "critic" in self.optimizers:
            nets["critic"] = self.critic
        if "student" in self.optimizers:
            nets["student"] = self.student
        return nets

    def _modes(self, training: Sequence[str]) -> None:
        """``requires_grad`` and train mode on the networks of this update only."""
        for name, net in self.trained().items():
            _set_trainable(net, name in training)
            net.train(name in training)
        if self.student is not None and "student" not in self.optimizers:
            _set_trainable(self.student, False)
            self.student.eval()

    def _set_lr(self) -> None:
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = learning_rate_at(self.step, self.lrs[name], self.milestone_steps, self.gamma)

    def critic_step(self, low: torch.Tensor, high: torch.Tensor) -> dict[str, float]:
        """One critic update (eq. 6.3), the generator's images made without gradient."""
        self._modes(["critic"])
        with torch.no_grad():
            fake = self.generator(low).float()
        if self.stage.gan == "dcgan":
            loss, terms = dcgan_critic_loss(self.wrapped["critic"], high, fake)
        else:
            loss, terms = critic_loss(self.wrapped["critic"], high, fake, self.gp_weight)
        opt = self.optimizers["critic"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"critic_loss": float(loss.detach()), **terms}

    def generator_step(self, low: torch.Tensor, high: torch.Tensor) -> dict[str, float]:
        """One update of the generator (and of the student FAN in the end-to-end stage) with the
        stage's weighted terms of eq. 6.5."""
        trained = ["generator"] + (["student"] if "student" in self.optimizers else [])
        self._modes(trained)
        s, w = self.stage, self.weights
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16 if self.cpu_bf16 else torch.float16,
                            enabled=self.amp or self.cpu_bf16):
            sr = self.wrapped["generator"](low).float()
            if s.pixel:
                terms["pixel"] = w["pixel"] * pixel_loss(sr, high, s.pixel_kind)
            if s.feature:
                terms["feature"] = w["feature"] * feature_loss(self.features, sr, high)
            if s.heatmap:
                with torch.no_grad():
                    target = stack_outputs(self.teacher(self.fan_input(high)))[-1].float()
                student = self.wrapped.get("student", self.student)
                predicted = stack_outputs(student(self.fan_input(sr)))[-1].float()
                terms["heatmap"] = w["heatmap"] * heatmap_loss(predicted, target, s.heatmap_kind)
            if s.adversarial:
                adversarial = dcgan_generator_loss if s.gan == "dcgan" else generator_adversarial_loss
                terms["adversarial"] = w["adversarial"] * adversarial(self.critic, sr)
        loss = sum(terms.values())
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"the generator's loss became {float(loss.detach())} at step {self.step}")
        for name in trained:
            self.optimizers[name].zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for name in trained:
            self.scaler.step(self.optimizers[name])
        self.scaler.update()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    # -- checkpoints -------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"stage": asdict(self.stage), "weights": self.weights, "gp_weight": self.gp_weight,
                "optimizer": self.optimizer_name, "lrs": self.lrs, "milestones": list(self.milestones),
                "gamma": self.gamma, "batch_size": self.batch_size, "total_steps": self.total_steps, "cpu_bf16": self.cpu_bf16,
                "seed": self.seed, "train_size": len(self.train_set), "world_size": self.world_size}

    def _save(self) -> None:
        if self.checkpoint_dir is None:  # the same on every rank, so the collectives below match
            return
        per_rank = gather_per_rank(self, {"rng": _rng_state(), "sums": self.sums, "count": self.count})
        if self.rank == 0:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "config": self._config(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "history": self.history, "per_rank": per_rank,
                "networks": {k: v.state_dict() for k, v in self.trained().items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "scaler": self.scaler.state_dict()}, self.checkpoint_dir / CHECKPOINT_NAME)
        if self.distributed:
            dist.barrier()

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a checkpoint of the Super-FAN trainer (format {ckpt.get('format')})")
        check_resume_settings(path, ckpt["config"], self._config())
        for name, net in self.trained().items():
            net.load_state_dict(ckpt["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        if ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        own = ckpt["per_rank"][self.rank]
        self.sums, self.count, self.history = dict(own["sums"]), own["count"], list(ckpt["history"])
        _set_rng_state(own["rng"])

    def _end_epoch(self, started: float) -> None:
        record = {"stage": self.stage.name, "epoch": self.epoch + 1, "step": self.step,
                  "epoch_time_s": round(time.perf_counter() - started, 3),
                  **{k: v / max(self.count, 1) for k, v in self.sums.items()}}
        self.history.append(record)
        self.epoch += 1
        self.batch_in_epoch, self.sums, self.count = 0, {}, 0
        if self.checkpoint_dir is not None and self.rank == 0:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.checkpoint_dir / HISTORY_NAME,
                              "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.history))
        self._save()

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self) -> list[dict[str, Any]]:
        """Train to ``iterations`` generator steps (resuming from the checkpoint when there is one) and
        return the per-epoch history (the mean of every logged term)."""
        from tqdm.auto import tqdm

        path = None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME
        if self.resume and path is not None and path.exists():
            self._load(path)
        else:
            _seed_everything(self.seed + self.rank)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.stage.name,
                   disable=not self.progress or self.rank != 0)
        reporter = TrainingReporter(f"{self.name} ({self.stage.name})", self.total_steps) if self.rank == 0 else None

        def train_batch(batch: Mapping[str, Any]) -> float:
            self._set_lr()
            batch = _to_device(batch, self.device)
            low, high = batch[self.input_key].float(), batch[self.target_key].float()
            logged = self.critic_step(low, high) if self.critic is not None else {}
            logged.update(self.generator_step(low, high))
            n = low.shape[0]
            for k, v in logged.items():
                self.sums[k] = self.sums.get(k, 0.0) + v * n
            self.count += n
            return logged["loss"]

        try:
            run_epochs(self, train_batch, bar, reporter)
        except StopTraining:
            pass
        finally:
            bar.close()
            if reporter is not None:
                reporter.update(self.step, self.last_loss, done=True)
            for net in self.trained().values():
                _set_trainable(net, True)
            if self._own_group:
                dist.destroy_process_group()
        return self.history
