"""The chapter-6 context: the 16 -> 64 px face pairs, every network of the chapter trained once (kept
in the run cache) and every method's super-resolved test faces and landmarks.

Networks, each a cached run (its key records the runs it starts from, so a new parent means a new
child):

- the **teacher FAN** (2 stacks, on the 64 px faces, 16 px heatmaps of the 68 3D landmarks' projections)
  trained on the high-resolution faces: the frozen target of the heatmap loss (eq. 6.4), the start of
  Super-FAN's own FAN and the FAN that evaluates every method in Table 6.2 ("trained on HR images");
- the **retrained FAN-bilinear**: the same FAN trained on bilinearly upsampled 16 px faces;
- the **feature networks**: ResNet-50 blocks 1-3 (eq. 6.2) and VGG-19 to conv5_4 (the SR-GAN
  baseline), from the user's ImageNet files when the profile names them, else stand-ins pretrained
  here on the synthetic faces (labelled so wherever they are used);
- the **super-resolution methods** of :data:`METHODS` (SR-ResNet, SR-GAN, Ours-pixel,
  -pixel-feature, -pixel-feature-heatmap, + GAN, Super-FAN, the ablations of Tables 6.3-6.5 and the
  fine-tuning on degraded inputs of section 6.3.3), trained by :class:`fa_lib.adversarial.SuperFanTrainer`.

On a CPU, the runs of one "wave" (runs whose parents are finished) are trained in parallel processes
(one torch thread each, ``workers`` of them) before they are used.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fa_lib import metrics
from fa_lib.adversarial import STAGES as SR_STAGES
from fa_lib.adversarial import SRStage, SuperFanTrainer
from fa_lib.bundled import sha256
from fa_lib.data.lowres import HIGH_RES, LOW_RES, SuperResolutionInputs, lowres_pairs
from fa_lib.experiments.ch6.data import RealLowResPairs, real_pairs
from fa_lib.data.pipeline import TransformedDataset
from fa_lib.data.synthetic import yaw_bin_of
from fa_lib.experiments.common import YAW_BIN_LABELS, jsonable
from fa_lib.experiments.context import ChapterContext
from fa_lib.experiments.runs import dataset_identity, run_key, seeded
from fa_lib.heatmaps import heatmaps_to_image_points
from fa_lib.models import FAN
from fa_lib.models.checkpoints import read_state_dict, save_model
from fa_lib.models.fan import parameter_count
from fa_lib.models.superfan import (LOSS_WEIGHTS, Critic, FeaturePretraining, ResNet50Features, SuperFan,
                                    VGG19Features, calibrate_feature_scale, sr_resnet, super_fan_generator)
from fa_lib.profiles import Ch6Scale, Profile
from fa_lib.train import Trainer, stack_outputs

#: bump when the training code changes what a cached run's weights would be
RUN_FORMAT = 1
#: training faces on which a stand-in feature network's scale is calibrated
CALIBRATION_FACES = 256
#: border cropped for the super-resolution community's luminance PSNR/SSIM (the scale factor)
Y_CROP = 4
EVALUATION = ("PSNR (eq. 6.6) and SSIM (Wang et al.: 11x11 Gaussian window, std 1.5) on RGB images in 0-255 "
              "(the primary numbers), and on the BT.601 luminance with a 4 px border cropped (the super-resolution "
              "literature's convention; the thesis states neither); per-image values averaged per |yaw| bin. "
              "AUC@10% of the CED of the NME normalised by sqrt(w*h) of the ground-truth box (eq. 4.1), on the "
              "68 projected 3D landmarks; one trained network per method (verdicts: paired over the test faces)")


@dataclass(frozen=True)
class SRMethod:
    """One super-resolution method: its generator (``"12-3-2"``, ``"12-3-2-skip"`` or ``"sr-resnet"``),
    the stage it is trained with (:class:`fa_lib.adversarial.SRStage`), the method it continues from
    (``parent``), its budget (``"sr"``, ``"gan"``, ``"joint"`` or ``"degraded"``), its feature network
    (``"resnet50"`` or ``"vgg19"``), its weights of eq. 6.5, whether it trains on degraded inputs, and
    the thesis's row name."""

    name: str
    row: str
    generator: str
    stage: SRStage
    budget: str
    parent: str | None = None
    features: str = "resnet50"
    weights: tuple[tuple[str, float], ...] = tuple(LOSS_WEIGHTS.items())
    degraded: bool = False

    def record(self) -> dict[str, Any]:
        return {"generator": self.generator, "stage": asdict(self.stage), "budget": self.budget,
                "features": self.features if self.stage.feature else None, "weights": dict(self.weights),
                "degraded": self.degraded}


def _srgan_weights(adversarial: float) -> tuple[tuple[str, float], ...]:
    return (("pixel", 0.0), ("feature", 1.0), ("heatmap", 0.0), ("adversarial", float(adversarial)))


def make_methods(srgan_adversarial_weight: float = 1e-3, adversarial_weight: float = LOSS_WEIGHTS["adversarial"]
                 ) -> dict[str, SRMethod]:
    """Every super-resolution method of chapter 6, by name (``adversarial_weight``: eq. 6.5's zeta)."""
    weights = tuple(dict(LOSS_WEIGHTS, adversarial=float(adversarial_weight)).items())
    srgan_stage = SRStage("sr-gan", pixel=False, feature=True, adversarial=True, gan="dcgan")
    methods = [
        SRMethod("sr-resnet", "SR-ResNet", "sr-resnet", SR_STAGES["pixel"], "sr"),
        SRMethod("sr-gan", "SR-GAN", "sr-resnet", srgan_stage, "gan", parent="sr-resnet", features="vgg19",
                 weights=_srgan_weights(srgan_adversarial_weight)),
        SRMethod("pixel", "Ours-pixel", "12-3-2", SR_STAGES["pixel"], "sr"),
        SRMethod("pixel-feature", "Ours-pixel-feature", "12-3-2", SR_STAGES["pixel-feature"], "sr"),
        SRMethod("pixel-feature-heatmap", "Ours-pixel-feature-heatmap", "12-3-2", SR_STAGES["pixel-feature-heatmap"],
                 "sr"),
        SRMethod("pixel-feature-heatmap-gan", "Ours-pixel-feature-heatmap-GAN", "12-3-2", SR_STAGES["gan"], "gan",
                 parent="pixel-feature-heatmap", weights=weights),
        SRMethod("super-fan", "Ours-Super-FAN", "12-3-2", SR_STAGES["super-fan"], "joint",
                 parent="pixel-feature-heatmap-gan", weights=weights),
        SRMethod("pixel-l1", "Ours-pixel (L1)", "12-3-2", SRStage("pixel-l1", pixel_kind="l1"), "sr"),
        SRMethod("pixel-skip", "Ours-pixel (with skip)", "12-3-2-skip", SR_STAGES["pixel"], "sr"),
        SRMethod("pixel-feature-heatmap-l1", "Ours-pixel-feature-heatmap (L1)", "12-3-2",
                 SRStage("pixel-feature-heatmap-l1", feature=True, heatmap=True, heatmap_kind="l1"), "sr"),
        SRMethod("super-fan-degraded", "Super-FAN (degraded inputs)", "12-3-2", SR_STAGES["super-fan"], "degraded",
                 parent="super-fan", degraded=True, weights=weights),
        SRMethod("sr-gan-degraded", "SR-GAN (degraded inputs)", "sr-resnet", srgan_stage, "degraded",
                 parent="sr-gan", features="vgg19", weights=_srgan_weights(srgan_adversarial_weight), degraded=True),
    ]
    return {m.name: m for m in methods}


#: the FANs of the chapter: what each is trained on
FANS = {"hr": "the 64 px high-resolution faces (the teacher; evaluates every method)",
        "bilinear": "the 16 px faces bilinearly upsampled to 64 px (Table 6.2's retrained FAN-bilinear)"}


@dataclass
class TrainedRun:
    """A trained network of the chapter: its modules, budget, history and where it came from."""

    name: str
    modules: nn.Module
    budget: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False

    @property
    def train_seconds(self) -> float:
        return float(self.budget.get("train_seconds", 0.0))


class Chapter6(ChapterContext):
    """Chapter 6's context: ``Chapter6("quick", seed=0)``. ``fan(kind)``, ``features(kind)`` and
    ``method(name)`` give the trained networks (from the run cache when there); ``super_resolved(name)``
    a method's test faces; ``errors(row)`` per-face NME; ``quality(name)`` per-face PSNR/SSIM."""

    chapter = 6

    def __init__(self, profile: str | Profile = "quick", *, seed: int = 0, device: str = "auto",
                 data_root: str | os.PathLike | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = print, runs_root: Any = None):
        super().__init__(profile, seed=seed, device=device, data_root=data_root, progress=progress, log=log,
                         runs_root=runs_root)
        self.setup: Ch6Scale = self.profile.ch6
        self.methods = make_methods(self.setup.srgan_adversarial_weight, self.setup.adversarial_weight)
        started = time.perf_counter()
        if self.data_root is None:
            self.train_pairs = lowres_pairs(self.profile, "train", seed=self.seed, progress=progress)
            self.test_pairs = lowres_pairs(self.profile, "test", seed=self.seed, progress=progress)
            self.degraded_pairs = lowres_pairs(self.profile, "train", degraded=True, seed=self.seed,
                                               progress=progress)
        else:  # real faces: 300-W-LP, AFLW, CelebA and part of LS3D-W balanced for training, the rest of
            # LS3D-W balanced for testing (thesis 6.1, 6.4)
            self.train_pairs, self.test_pairs, self.degraded_pairs = real_pairs(
                self.data_root, seed=self.seed, test_size=self.profile.data.lowres_test_size)
        # the networks trained on landmark targets see only faces with 68 landmarks (AFLW's and CelebA's
        # have none; the super-resolution networks need none)
        self.annotated_pairs = (self.train_pairs.annotated() if isinstance(self.train_pairs, RealLowResPairs)
                                else self.train_pairs)
        self.data_seconds = time.perf_counter() - started
        self._trained: dict[str, TrainedRun] = {}
        self._test: dict[str, torch.Tensor] | None = None
        self._sr: dict[str, torch.Tensor] = {}
        self.results_cache: dict[str, Any] = {}

    # -- data --------------------------------------------------------------------------------------

    def items(self, *, fan_input: str = "hr", degraded: bool = False, augment: bool = True,
              annotated: bool = False) -> Dataset:
        """The training pairs as tensors: the degraded ones, or (``annotated``) only those with 68
        landmarks, for the networks trained on landmark targets."""
        if degraded and annotated:
            raise ValueError("the degraded pairs train super-resolution only: no annotated subset")
        pairs = self.degraded_pairs if degraded else self.annotated_pairs if annotated else self.train_pairs
        return TransformedDataset(pairs, SuperResolutionInputs(self.setup.sigma, flip=augment, fan_input=fan_input),
                                  seed=self.seed)

    def test_tensors(self) -> dict[str, torch.Tensor]:
        """The test pairs once: ``image_lr``, ``image_hr``, ``landmarks_image``, ``box``, ``matrix``,
        ``pose`` and ``bin`` (|yaw| bin 0-2)."""
        if self._test is None:
            items = TransformedDataset(self.test_pairs, SuperResolutionInputs(self.setup.sigma), seed=0)
            parts: dict[str, list[torch.Tensor]] = {}
            for batch in DataLoader(items, batch_size=64, shuffle=False):
                for key in ("image_lr", "image_hr", "landmarks_image", "box", "matrix", "pose"):
                    parts.setdefault(key, []).append(batch[key])
            self._test = {k: torch.cat(v) for k, v in parts.items()}
            self._test["bin"] = torch.from_numpy(yaw_bin_of(self._test["pose"].numpy()))
        return self._test

    @property
    def bins(self) -> np.ndarray:
        return self.test_tensors()["bin"].numpy()

    # -- budgets -----------------------------------------------------------------------------------

    def _steps(self, iterations: int | None, epochs: int, batch_size: int) -> int:
        if iterations is not None:
            return int(iterations)
        return int(epochs) * int(np.ceil(len(self.train_pairs) / batch_size))

    def budget(self, kind: str) -> dict[str, Any]:
        """Optimiser steps, lr, milestones and batch of a budget kind (``fan``, ``standin``, ``sr``,
        ``gan``, ``joint``, ``degraded``)."""
        s = self.setup
        if kind == "fan":
            return {"steps": self._steps(s.fan_iterations, s.fan_epochs, s.fan_batch_size), "lr": s.fan_lr,
                    "milestones": (0.8,), "gamma": 0.2, "batch_size": s.fan_batch_size}
        if kind == "standin":
            return {"steps": s.standin_iterations, "lr": s.standin_lr, "milestones": (0.8,), "gamma": 0.1,
                    "batch_size": s.standin_batch_size}
        if kind == "sr":
            return {"steps": self._steps(s.sr_iterations, s.sr_epochs, s.batch_size), "lr": s.lr,
                    "milestones": tuple(s.lr_milestones), "gamma": s.lr_gamma, "batch_size": s.batch_size}
        if kind in ("gan", "joint", "degraded"):
            iterations = {"gan": s.gan_iterations, "joint": s.joint_iterations, "degraded": s.degraded_iterations}[kind]
            epochs = s.joint_epochs if kind == "joint" else s.gan_epochs
            return {"steps": self._steps(iterations, epochs, s.batch_size), "lr": s.finetune_lr, "milestones": (),
                    "gamma": 1.0, "batch_size": s.batch_size}
        raise ValueError(f"unknown budget kind {kind!r}")

    # -- what identifies a run ---------------------------------------------------------------------

    def fan_kwargs(self) -> dict[str, Any]:
        s = self.setup
        return dict(num_modules=s.fan_stacks, width=s.fan_width, num_landmarks=68, hg_depth=s.fan_hg_depth,
                    stem_channels=tuple(s.fan_stem_channels))

    def _base_record(self, network: str) -> dict[str, Any]:
        return {"chapter": 6, "format": RUN_FORMAT, "network": network, "seed": self.seed,
                "cpu_bf16": self.setup.cpu_bf16}

    def fan_record(self, kind: str) -> dict[str, Any]:
        return dict(self._base_record(f"fan-{kind}"), model=jsonable(self.fan_kwargs()),
                    inputs=SuperResolutionInputs(self.setup.sigma, flip=True, fan_input=kind).record(),
                    budget=jsonable(self.budget("fan")), train_set=dataset_identity(self.annotated_pairs))

    def features_record(self, kind: str) -> dict[str, Any]:
        s = self.setup
        weights = s.resnet50_weights if kind == "resnet50" else s.vgg19_weights
        if weights:
            return dict(self._base_record(f"features-{kind}"), imagenet=sha256(weights))
        return dict(self._base_record(f"features-{kind}-standin"), budget=jsonable(self.budget("standin")),
                    vgg_width_divisor=s.vgg_width_divisor if kind == "vgg19" else None,
                    train_set=dataset_identity(self.annotated_pairs))

    def generator_kwargs(self, generator: str) -> dict[str, Any]:
        s = self.setup
        if generator == "sr-resnet":
            return {"kind": "sr-resnet", "width": s.generator_width, "blocks": s.sr_resnet_blocks,
                    "output": s.generator_output}
        return {"kind": "12-3-2", "width": s.generator_width, "blocks": tuple(s.generator_blocks),
                "long_skips": generator == "12-3-2-skip", "output": s.generator_output}

    def method_record(self, name: str) -> dict[str, Any]:
        m = self.methods[name]
        record = dict(self._base_record(f"sr-{name}"), method=m.record(),
                      generator=jsonable(self.generator_kwargs(m.generator)),
                      budget=jsonable(self.budget(m.budget)), critic_width=self.setup.critic_width,
                      train_set=dataset_identity(self.degraded_pairs if m.degraded else self.train_pairs))
        if m.parent is not None:
            record["parent"] = run_key(self.method_record(m.parent))
        if m.stage.feature:
            record["features"] = run_key(self.features_record(m.features))
            weights = self.setup.resnet50_weights if m.features == "resnet50" else self.setup.vgg19_weights
            if not weights:
                record["feature_calibration"] = f"bilinear feature loss = pixel loss, {CALIBRATION_FACES} faces"
            if m.features == "vgg19":
                record["feature_precision"] = "float32"
        if m.stage.heatmap:
            record["teacher"] = run_key(self.fan_record("hr"))
        return record

    # -- building ----------------------------------------------------------------------------------

    def build_fan(self) -> FAN:
        return FAN(**self.fan_kwargs())

    def build_generator(self, generator: str) -> nn.Module:
        kw = self.generator_kwargs(generator)
        if kw["kind"] == "sr-resnet":
            return sr_resnet(width=kw["width"], blocks=kw["blocks"], output=kw["output"])
        return super_fan_generator(width=kw["width"], blocks=kw["blocks"], long_skips=kw["long_skips"],
                                   output=kw["output"])

    def method_modules(self, name: str) -> nn.ModuleDict:
        """The modules a method's run keeps: its generator, its critic (GAN stages) and its FAN (the
        end-to-end stages)."""
        m = self.methods[name]
        modules = nn.ModuleDict({"generator": self.build_generator(m.generator)})
        if m.stage.adversarial:
            modules["critic"] = Critic(width=self.setup.critic_width)
        if m.stage.train_student:
            modules["fan"] = self.build_fan()
        return modules

    # -- training ----------------------------------------------------------------------------------

    def _remember(self, name: str, modules: nn.Module, hit) -> TrainedRun:
        run = TrainedRun(name, modules, dict(hit.budget), list(hit.history), hit.cached)
        self._trained[name] = run
        return run

    def fan(self, kind: str = "hr") -> nn.Module:
        """The teacher FAN (``"hr"``) or the retrained FAN-bilinear (``"bilinear"``), trained once."""
        if kind not in FANS:
            raise ValueError(f"unknown FAN {kind!r}; choose one of {', '.join(FANS)}")
        key = f"fan-{kind}"
        if key not in self._trained:
            with seeded(self.seed):
                model = self.build_fan()
            b = self.budget("fan")

            def train(folder):
                trainer = Trainer(model, self.items(fan_input=kind, annotated=True), loss="l2", optimizer="rmsprop", lr=b["lr"],
                                  batch_size=b["batch_size"], iterations=b["steps"], milestones=b["milestones"],
                                  gamma=b["gamma"], cpu_bf16=self.setup.cpu_bf16, device=self.device, seed=self.seed,
                                  progress=self.progress, checkpoint_dir=None if folder is None else folder / "train",
                                  name=f"FAN ({kind}) seed{self.seed}")
                started = time.perf_counter()
                history = trainer.fit()
                return {"steps": trainer.step, "train_seconds": time.perf_counter() - started}, history

            hit = self.runs.get_or_train(key, self.fan_record(kind), model, train)
            self._remember(key, model, hit)
        return self._trained[key].modules.to(self.device).eval()

    def features(self, kind: str = "resnet50") -> nn.Module:
        """ResNet-50 B1-B3 (``"resnet50"``) or VGG-19 to conv5_4 (``"vgg19"``), frozen: ImageNet weights
        from the profile's file, else the stand-in pretrained on the synthetic faces."""
        if kind not in ("resnet50", "vgg19"):
            raise ValueError(f"unknown feature network {kind!r}; choose resnet50 or vgg19")
        key = f"features-{kind}"
        if key in self._trained:
            return self._trained[key].modules
        s = self.setup
        weights = s.resnet50_weights if kind == "resnet50" else s.vgg19_weights
        if weights:
            net = ResNet50Features() if kind == "resnet50" else VGG19Features()
            net.load_torchvision(read_state_dict(weights), source=f"ImageNet ({os.path.basename(weights)})")
            self._trained[key] = TrainedRun(key, net, {"source": net.source, "train_seconds": 0.0}, cached=True)
            return net.to(self.device)
        with seeded(self.seed):
            net = ResNet50Features() if kind == "resnet50" else VGG19Features(s.vgg_width_divisor)
            wrapper = FeaturePretraining(net)
        b = self.budget("standin")

        def train(folder):
            trainer = Trainer(wrapper, self.items(annotated=True), loss=_landmark_regression_loss, optimizer="adam", lr=b["lr"],
                              batch_size=b["batch_size"], iterations=b["steps"], milestones=b["milestones"],
                              gamma=b["gamma"], cpu_bf16=s.cpu_bf16, device=self.device, seed=self.seed,
                              progress=self.progress, checkpoint_dir=None if folder is None else folder / "train",
                              name=f"{kind} stand-in seed{self.seed}", decode_landmarks=False)
            started = time.perf_counter()
            history = trainer.fit()
            return {"steps": trainer.step, "train_seconds": time.perf_counter() - started}, history

        hit = self.runs.get_or_train(f"{key}-standin", self.features_record(kind), wrapper, train)
        net.freeze()
        steps = int(hit.budget.get("steps", 0))
        scale = self._calibrate(net)
        net.source = (f"stand-in: {'ResNet-50 B1-B3' if kind == 'resnet50' else 'VGG-19 to conv5_4'}"
                      f"{'' if kind == 'resnet50' or s.vgg_width_divisor == 1 else f' (widths / {s.vgg_width_divisor})'}"
                      f" pretrained by this project to regress the 68 landmarks of the synthetic faces ({steps} steps), "
                      f"its outputs scaled by {scale:.3g} so that bilinear upsampling's feature loss equals its pixel "
                      "loss on the training faces; no ImageNet weights")
        self._remember(key, net, hit)
        return net.to(self.device)

    def _calibrate(self, net: nn.Module, faces: int = CALIBRATION_FACES) -> float:
        """:func:`fa_lib.models.superfan.calibrate_feature_scale` of a stand-in on the first training
        pairs, bilinear upsampling against the HR faces."""
        items = TransformedDataset(self.train_pairs, SuperResolutionInputs(self.setup.sigma), seed=self.seed)
        batch = next(iter(DataLoader(items, batch_size=min(faces, len(items)), shuffle=False)))
        net.to(self.device)
        return calibrate_feature_scale(net, self.bilinear(batch["image_lr"]).to(self.device),
                                       batch["image_hr"].to(self.device))

    def method(self, name: str) -> TrainedRun:
        """A super-resolution method's trained modules (its parent and networks trained first)."""
        if name not in self.methods:
            raise ValueError(f"unknown method {name!r}; choose one of {', '.join(self.methods)}")
        if name in self._trained:
            return self._trained[name]
        m = self.methods[name]
        parent = self.method(m.parent) if m.parent is not None else None
        teacher = self.fan("hr") if m.stage.heatmap else None
        features = self.features(m.features) if m.stage.feature else None
        with seeded(self.seed):
            modules = self.method_modules(name)
        if parent is not None:
            for part, module in modules.items():
                if part in parent.modules:
                    module.load_state_dict(parent.modules[part].state_dict())
        if "fan" in modules and "fan" not in (parent.modules if parent is not None else {}):
            modules["fan"].load_state_dict(teacher.state_dict())
        student = modules["fan"] if "fan" in modules else (copy.deepcopy(teacher) if teacher is not None else None)
        b = self.budget(m.budget)

        def train(folder):
            trainer = SuperFanTrainer(
                modules["generator"], self.items(degraded=m.degraded), m.stage, critic=modules["critic"]
                if "critic" in modules else None, student=student, teacher=teacher, features=features,
                weights=dict(m.weights), optimizer=self.setup.optimizer, lr=b["lr"], milestones=b["milestones"],
                gamma=b["gamma"], batch_size=b["batch_size"], iterations=b["steps"], seed=self.seed,
                device=self.device, cpu_bf16=self.setup.cpu_bf16, progress=self.progress,
                checkpoint_dir=None if folder is None else folder / "train", name=f"{m.row} seed{self.seed}")
            started = time.perf_counter()
            history = trainer.fit()
            seconds = time.perf_counter() - started
            return {"steps": trainer.step, "train_seconds": seconds,
                    "seconds_per_step": seconds / max(trainer.step, 1)}, history

        hit = self.runs.get_or_train(f"sr-{name}", self.method_record(name), modules, train)
        return self._remember(name, modules.to(self.device).eval(), hit)

    def super_fan(self, name: str = "super-fan") -> SuperFan:
        """Super-FAN (``name`` "super-fan" or "super-fan-degraded") as one module for inference."""
        run = self.method(name)
        return SuperFan(run.modules["generator"], run.modules["fan"]).eval()

    def framing(self) -> dict[str, Any]:
        """How the training faces sit in their 64 px images: ``face_fraction`` (median longer side of the
        68-point box over the image side) and ``box_center_offset`` (median image centre minus box centre,
        in image sides): what :class:`fa_lib.api.TinyFaces` needs to frame a user's face box the same way."""
        if isinstance(self.train_pairs, RealLowResPairs):  # framed by construction
            return self.train_pairs.framing()
        boxes = np.asarray(self.train_pairs.array("box"), np.float64)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        return {"face_fraction": float(np.median(side / HIGH_RES)),
                "box_center_offset": [float(v) for v in np.median((HIGH_RES / 2 - centre) / HIGH_RES, axis=0)]}

    def export_super_fan(self, path: str | os.PathLike | None = None, name: str = "super-fan-degraded") -> Path:
        """Save Super-FAN (``name``: by default the one fine-tuned on degraded inputs, for real photos) for
        ``FaceAligner(super_resolution=path)`` / ``fa-lib landmarks --super-resolution``; default path:
        ``super_fan.pt`` in the profile's folder of the run cache."""
        if path is None:
            if self.runs.root is None:
                raise ValueError("no run cache folder to export to: pass a path")
            path = Path(self.runs.root) / self.name / "super_fan.pt"
        extra = dict(self.framing(), method=name, profile=self.name, seed=self.seed,
                     trained_on=f"{self.train_pairs.name} ({len(self.train_pairs)} faces)",
                     run_key=run_key(self.method_record(name)))
        return Path(save_model(copy.deepcopy(self.super_fan(name)).cpu(), path, extra=extra))

    # -- training in parallel ------------------------------------------------------------------------

    def _jobs(self) -> list[list[str]]:
        """Every trained network of the chapter in waves (a run's parents are in earlier waves)."""
        first = ["fan:hr", "fan:bilinear", "features:resnet50", "features:vgg19"]
        depth: dict[str, int] = {}

        def level(name: str) -> int:
            if name not in depth:
                m = self.methods[name]
                depth[name] = 1 + (level(m.parent) if m.parent is not None else 0)
            return depth[name]

        for name in self.methods:
            level(name)
        waves = [first] + [[f"method:{n}" for n in self.methods if depth[n] == k] for k in range(1, max(depth.values()) + 1)]
        return waves

    def _job_cached(self, job: str) -> bool:
        kind, _, name = job.partition(":")
        if kind == "fan":
            return self.runs.is_finished(f"fan-{name}", self.fan_record(name))
        if kind == "features":
            weights = self.setup.resnet50_weights if name == "resnet50" else self.setup.vgg19_weights
            return bool(weights) or self.runs.is_finished(f"features-{name}-standin", self.features_record(name))
        return self.runs.is_finished(f"sr-{name}", self.method_record(name))

    def jobs(self) -> list[str]:
        return [job for wave in self._jobs() for job in wave]

    def run_job(self, job: str) -> None:
        kind, _, name = job.partition(":")
        runners = {"fan": self.fan, "features": self.features, "method": self.method}
        if kind not in runners:
            raise ValueError(f"unknown chapter-6 job {job!r}; the jobs are {', '.join(self.jobs())}")
        runners[kind](name)

    def train_all(self) -> None:
        """Train every missing network, wave by wave; on a CPU with ``workers`` > 1 the runs of a wave
        are trained in parallel processes (one torch thread each)."""
        workers = self.setup.workers if self.setup.workers is not None else min(2, os.cpu_count() or 1)
        for wave in self._jobs():
            missing = [job for job in wave if not self._job_cached(job)]
            if len(missing) > 1 and workers > 1 and self.device.type == "cpu":
                for job in self.in_worker_processes(missing, "run_job", workers):
                    self.log(f"[ch6] {job} trained in a worker process")
            for job in wave:
                self.run_job(job)

    def trained_runs(self) -> dict[str, TrainedRun]:
        """Every trained network of the chapter (trained now when missing)."""
        self.train_all()
        return dict(self._trained)

    # -- evaluation --------------------------------------------------------------------------------

    @torch.no_grad()
    def _batched(self, fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int = 50) -> torch.Tensor:
        return torch.cat([fn(images[i:i + batch].to(self.device)).float().cpu() for i in range(0, len(images), batch)])

    def bilinear(self, low: torch.Tensor | None = None) -> torch.Tensor:
        """The 16 px faces bilinearly upsampled to 64 px (Table 6.1's baseline row)."""
        low = self.test_tensors()["image_lr"] if low is None else low
        return F.interpolate(low, size=HIGH_RES, mode="bilinear", align_corners=False).clamp(0, 1)

    def super_resolved(self, name: str) -> torch.Tensor:
        """A method's 64 px test faces in [0, 1] (``"bilinear"`` and ``"hr"`` included)."""
        if name not in self._sr:
            data = self.test_tensors()
            if name == "bilinear":
                self._sr[name] = self.bilinear()
            elif name == "hr":
                self._sr[name] = data["image_hr"]
            else:
                generator = self.method(name).modules["generator"]
                self._sr[name] = self._batched(lambda x: generator(x).clamp(0, 1), data["image_lr"])
        return self._sr[name]

    def landmarks(self, fan: nn.Module, images: torch.Tensor) -> np.ndarray:
        """A FAN's 68 landmarks (N, 68, 2) on 64 px faces, in their pixels."""
        maps = self._batched(lambda x: stack_outputs(fan(x))[-1], images)
        return heatmaps_to_image_points(maps, self.test_tensors()["matrix"][0], decoder="subpixel")[0]

    def nme(self, points: np.ndarray, faces: Sequence[int] | None = None) -> np.ndarray:
        """Per-face NME (fraction) of ``points`` on the test faces ``faces`` (default: all)."""
        data = self.test_tensors()
        index = slice(None) if faces is None else list(faces)
        return np.asarray(metrics.nme_box(points, data["landmarks_image"][index].numpy(), data["box"][index].numpy()),
                          np.float64)

    def row_inputs(self) -> dict[str, tuple[str, str]]:
        """Table 6.2's rows: (which images, which FAN). The thesis's "FAN-Ours-pixel-feature-heatmap"
        row is the "+GAN" model with the FAN not trained with it (section 6.3's bullet list and finding 2
        name it so); the model without the GAN is an extra row."""
        return {"FAN-bilinear": ("bilinear", "hr"), "FAN-SR-ResNet": ("sr-resnet", "hr"),
                "FAN-SR-GAN": ("sr-gan", "hr"), "Retrained FAN-bilinear": ("bilinear", "bilinear"),
                "FAN-Ours-pixel": ("pixel", "hr"), "FAN-Ours-pixel-feature": ("pixel-feature", "hr"),
                "FAN-Ours-pixel-feature-heatmap": ("pixel-feature-heatmap-gan", "hr"),
                "FAN-Ours-pixel-feature-heatmap (no GAN)": ("pixel-feature-heatmap", "hr"),
                "FAN-Ours-pixel-feature-heatmap (L1)": ("pixel-feature-heatmap-l1", "hr"),
                "Super-FAN": ("super-fan", "super-fan"), "FAN-HR images": ("hr", "hr")}

    def errors(self, row: str) -> np.ndarray:
        """Per-face NME (fraction) of a Table 6.2 row (:meth:`row_inputs`)."""
        key = f"errors:{row}"
        if key not in self.results_cache:
            images, fan = self.row_inputs()[row]
            network = self.method(fan).modules["fan"] if fan == "super-fan" else self.fan(fan)
            self.results_cache[key] = self.nme(self.landmarks(network, self.super_resolved(images)))
        return self.results_cache[key]

    def auc_scores(self, row: str) -> np.ndarray:
        """Each face's share of the AUC (%): ``100 * max(0, 1 - NME / threshold)``; their mean over a
        set of faces is that set's AUC."""
        t = self.setup.auc_threshold
        return 100.0 * np.clip(1.0 - self.errors(row) / t, 0.0, 1.0)

    def quality(self, name: str) -> dict[str, np.ndarray]:
        """Per-face ``psnr``, ``ssim`` (RGB 0-255, Wang's Gaussian window) and ``psnr_y``, ``ssim_y``
        (luminance, 4 px border cropped) of a method's 64 px faces against the HR faces."""
        key = f"quality:{name}"
        if key not in self.results_cache:
            sr = _to_uint8(self.super_resolved(name))
            hr = _to_uint8(self.test_tensors()["image_hr"])
            out = {"psnr": [], "ssim": [], "psnr_y": [], "ssim_y": []}
            for a, b in zip(hr, sr):
                out["psnr"].append(metrics.psnr(a, b))
                out["ssim"].append(metrics.ssim(a, b, convention="wang"))
                out["psnr_y"].append(metrics.psnr(a, b, channel="y", crop_border=Y_CROP))
                out["ssim_y"].append(metrics.ssim(a, b, convention="wang", channel="y", crop_border=Y_CROP))
            self.results_cache[key] = {k: np.asarray(v, np.float64) for k, v in out.items()}
        return self.results_cache[key]

    def by_bin(self, values: np.ndarray) -> dict[str, float]:
        """Mean of per-face values per |yaw| bin (:data:`YAW_BIN_LABELS`) and over all faces."""
        bins = self.bins
        out = {label: float(np.mean(values[bins == b])) for b, label in enumerate(YAW_BIN_LABELS) if np.any(bins == b)}
        out["all"] = float(np.mean(values))
        return out

    def parameter_counts(self) -> dict[str, int]:
        return {"12-3-2 generator": parameter_count(self.build_generator("12-3-2")),
                "SR-ResNet": parameter_count(self.build_generator("sr-resnet")),
                "critic": parameter_count(Critic(width=self.setup.critic_width)), "FAN": parameter_count(self.build_fan())}

    def provenance_extra(self) -> dict[str, Any]:
        extra = super().provenance_extra()
        extra.update(evaluation=EVALUATION, data={"train": f"{self.train_pairs.name} ({len(self.train_pairs)} faces)",
                                                  "test": f"{self.test_pairs.name} ({len(self.test_pairs)} faces, "
                                                          "yaw-balanced)"})
        if self.annotated_pairs is not self.train_pairs:
            extra["data"]["train_landmark_targets"] = (f"{self.annotated_pairs.name} ({len(self.annotated_pairs)} "
                                                       "faces: the FANs and feature stand-ins)")
        sources = {k: getattr(v.modules, "source", None) for k, v in self._trained.items() if k.startswith("features")}
        if sources:
            extra["feature_networks"] = sources
        return extra


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)


def _landmark_regression_loss(outputs: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    prediction = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
    return F.mse_loss(prediction.float(), batch["landmarks_norm"].float())


__all__ = ["Chapter6", "SRMethod", "TrainedRun", "make_methods", "FANS", "LOW_RES", "HIGH_RES"]
