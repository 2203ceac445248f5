"""CALE, Convolutional Aggregation of Local Evidence (thesis chapter 3, Figs. 3.1-3.3).

Two subnetworks in cascade:

- :class:`CaleDetector` (section 3.1.1, Table 3.1, Fig. 3.2): VGG-16 made fully convolutional,
  with the FCN-8s fusion of the stride-16 (pool4) and stride-8 (pool3) features, one map per
  landmark, upsampled bilinearly to the input resolution (A9). Trained with the per-pixel sigmoid
  cross-entropy of eq. 3.1 on **disc** targets drawn for the **visible** points only.
- :class:`CaleRegressor` (section 3.1.2, Table 3.2, Fig. 3.3): the image stacked with the N
  detection maps (sigmoid probabilities), four large-kernel convolutions (C1-C4), three 1x1
  (C5-C7) and a x4 deconvolution (C8), regressing **Gaussian** maps for **every** point, visible or
  not, with the L2 loss of eq. 3.2.
- :class:`CaleAligner`: a trained CALE on an image and face boxes -> points and a per-point
  visibility score (its detector's confidence).
- :class:`Cale` = detector -> regressor; ``forward`` returns ``(detector_logits, regressed_maps)``,
  both at the input resolution, so the project's trainer decodes the regressor's maps (the last
  output) and a loss can supervise both (the joint phase of section 3.1.4).

Readings of the thesis's layer tables (each recorded in :meth:`Cale.config` and on the book page):

- Tables 3.1/3.2 give 16 output channels: the 16 MPII joints of the human-pose paper the tables
  come from. Here the output has one channel per landmark (34, 21, 22 or 68).
- Table 3.1's A5 lists 1x1 convolutions; VGG-16's conv5 layers are 3x3 and ImageNet weights only
  load with 3x3, so conv5 is 3x3.
- Table 3.2 lists no pooling, yet C8 upsamples by 4 and the output is at the input resolution: two
  2x2 max-poolings, after C1 and after C2 (as in the human-pose paper's regression subnetwork).
- The detector's module names and shapes follow torchvision's ``vgg16().features`` (or
  ``vgg16_bn().features`` with ``batch_norm=True``), so a user's ImageNet state_dict loads strictly
  (:meth:`CaleDetector.load_vgg16_features`). Grey images are repeated to three channels for it.
- The FCN's "pad 100 and crop" trick is replaced by "same" padding; with inputs divisible by 32
  the fused maps align exactly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fa_lib import geometry
from fa_lib.heatmaps import heatmaps_to_image_points

#: VGG-16's convolutions per block (Table 3.1, A1-A5) and channels at the thesis's scale
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
#: Table 3.2: channels and kernels of C1-C6 at the thesis's scale
REGRESSOR_WIDTHS = (64, 64, 128, 256, 512, 512)
REGRESSOR_KERNELS = (9, 13, 13, 15)
FUSIONS = ("32s", "8s")


def vgg16_features(widths: Sequence[int] = VGG16_WIDTHS, in_channels: int = 3,
                   batch_norm: bool = False) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """VGG-16's ``features`` (Table 3.1, A1-A5) in torchvision's layout: conv (BN) ReLU ..., a 2x2
    max-pooling closing each block. Returns the module and the indices of the outputs of pool3,
    pool4 and pool5 (strides 8, 16, 32)."""
    if len(widths) != 5:
        raise ValueError(f"VGG-16 has five blocks, got widths {tuple(widths)}")
    layers: list[nn.Module] = []
    pools = []
    channels = in_channels
    for convs, width in zip(VGG16_BLOCKS, widths):
        for _ in range(convs):
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
        pools.append(len(layers) - 1)
    return nn.Sequential(*layers), (pools[2], pools[3], pools[4])


def _bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """Weights of a transposed convolution that upsamples each channel bilinearly (FCN's init)."""
    factor = (kernel + 1) // 2
    centre = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = torch.arange(kernel, dtype=torch.float32)
    filt = 1 - (og - centre).abs() / factor
    weight = torch.zeros(channels, channels, kernel, kernel)
    for c in range(channels):
        weight[c, c] = filt[:, None] * filt[None, :]
    return weight


class CaleDetector(nn.Module):
    """The detection subnetwork (Table 3.1, Fig. 3.2): VGG-16 as an FCN, one logit map per point at
    the input resolution.

    ``n_points``: output maps; ``widths``: channels of the five VGG blocks (thesis 64...512);
    ``fc_channels``/``fc6_kernel``: fc6 as a ``fc6_kernel`` x ``fc6_kernel`` convolution and fc7 as a
    1x1, ``fc_channels`` wide (thesis 4096, 7); ``dropout`` after fc6 and fc7 (FCN's); ``in_channels``:
    3 (grey inputs are repeated); ``batch_norm``: vgg16_bn's layout (trainable from scratch; the
    thesis fine-tunes the plain VGG-16 from ImageNet). ``fusion``: ``"8s"`` (FCN-8s, the thesis's
    final detector) or ``"32s"`` (the first training stage of section 3.1.4); switchable any time.
    """

    def __init__(self, n_points: int, *, widths: Sequence[int] = VGG16_WIDTHS, fc_channels: int = 4096,
                 fc6_kernel: int = 7, dropout: float = 0.5, in_channels: int = 3, batch_norm: bool = False,
                 fusion: str = "8s"):
        super().__init__()
        if n_points < 1:
            raise ValueError(f"n_points must be positive, got {n_points}")
        if fc6_kernel % 2 != 1:
            raise ValueError(f"fc6_kernel must be odd ('same' padding), got {fc6_kernel}")
        self.n_points, self.in_channels = int(n_points), int(in_channels)
        self.features, (self.pool3, self.pool4, self.pool5) = vgg16_features(widths, in_channels, batch_norm)
        self.fc = nn.Sequential(
            nn.Conv2d(widths[4], fc_channels, fc6_kernel, padding=fc6_kernel // 2), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout), nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout))
        self.score_fr = nn.Conv2d(fc_channels, n_points, 1)
        self.score_pool4 = nn.Conv2d(widths[3], n_points, 1)
        self.score_pool3 = nn.Conv2d(widths[2], n_points, 1)
        self.upscore2 = nn.ConvTranspose2d(n_points, n_points, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_points, n_points, 4, stride=2, padding=1, bias=False)
        for layer in (self.score_fr, self.score_pool4, self.score_pool3):  # FCN: new score layers start at 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.upscore2, self.upscore_pool4):
            layer.weight.data.copy_(_bilinear_kernel(n_points, 4))
        self.fusion = fusion
        self._config = dict(n_points=self.n_points, widths=tuple(int(w) for w in widths),
                            fc_channels=int(fc_channels), fc6_kernel=int(fc6_kernel), dropout=float(dropout),
                            in_channels=self.in_channels, batch_norm=bool(batch_norm))

    @property
    def fusion(self) -> str:
        return self._fusion

    @fusion.setter
    def fusion(self, value: str) -> None:
        if value not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {value!r}")
        self._fusion = value

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if size[0] % 32 or size[1] % 32:
            raise ValueError(f"the detector's input sides must be multiples of 32 (FCN-8s), got {tuple(size)}")
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        feats = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (self.pool3, self.pool4):
                feats[i] = x
        score = self.score_fr(self.fc(x))
        if self.fusion == "32s":
            return F.interpolate(score, size=size, mode="bilinear", align_corners=False)
        score = self.upscore2(score) + self.score_pool4(feats[self.pool4])
        score = self.upscore_pool4(score) + self.score_pool3(feats[self.pool3])
        return F.interpolate(score, size=size, mode="bilinear", align_corners=False)  # A9: x8 bilinear

    def load_vgg16_features(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load ImageNet VGG-16 weights (torchvision's ``vgg16().state_dict()`` or its ``features``
        part; ``vgg16_bn`` for a ``batch_norm`` detector) into ``self.features``, strictly: every
        convolution must be there with its shape (the thesis's section 3.1.4 starts from these)."""
        prefix = "features."
        features = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not features:
            features = dict(state_dict)
        self.features.load_state_dict(features, strict=True)


class CaleRegressor(nn.Module):
    """The regression subnetwork (Table 3.2, Fig. 3.3): [image || N detection maps] -> N regressed
    maps at the input resolution.

    ``widths``: channels of C1-C6 (thesis 64, 64, 128, 256, 512, 512); ``kernels``: C1-C4 (thesis 9,
    13, 13, 15); a 2x2 max-pooling after C1 and C2 (see the module docstring); C7 1x1 to N maps; C8 a
    transposed convolution (kernel 8, stride 4) back to the input resolution. ``batch_norm``: BN
    after C1-C6 (not in the thesis; trains from scratch at a high learning rate).
    """

    def __init__(self, n_points: int, image_channels: int = 1, *, widths: Sequence[int] = REGRESSOR_WIDTHS,
                 kernels: Sequence[int] = REGRESSOR_KERNELS, batch_norm: bool = False):
        super().__init__()
        if len(widths) != 6 or len(kernels) != 4:
            raise ValueError(f"Table 3.2 has six widths (C1-C6) and four large kernels (C1-C4), got "
                             f"{tuple(widths)} and {tuple(kernels)}")
        if any(k % 2 != 1 for k in kernels):
            raise ValueError(f"kernels must be odd ('same' padding), got {tuple(kernels)}")
        layers: list[nn.Module] = []
        channels = image_channels + n_points
        for i, width in enumerate(widths):
            k = kernels[i] if i < 4 else 1
            layers.append(nn.Conv2d(channels, width, k, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            if i in (0, 1):
                layers.append(nn.MaxPool2d(2, 2))
            channels = width
        self.body = nn.Sequential(*layers)
        self.c7 = nn.Conv2d(channels, n_points, 1)
        self.c8 = nn.ConvTranspose2d(n_points, n_points, 8, stride=4, padding=2)
        self.n_points, self.image_channels = int(n_points), int(image_channels)
        self._config = dict(n_points=self.n_points, image_channels=self.image_channels,
                            widths=tuple(int(w) for w in widths), kernels=tuple(int(k) for k in kernels),
                            batch_norm=bool(batch_norm))

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, image: torch.Tensor, detections: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != detections.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and detection maps {tuple(detections.shape)} differ in size")
        if image.shape[-1] % 4 or image.shape[-2] % 4:
            raise ValueError(f"the regressor's input sides must be multiples of 4, got {tuple(image.shape[-2:])}")
        return self.c8(self.c7(self.body(torch.cat([image, detections], 1))))


class Cale(nn.Module):
    """CALE (Fig. 3.1): the detector's sigmoid maps, stacked with the image, go to the regressor.

    ``forward(x)`` returns ``(detector_logits, regressed_maps)``; ``x`` is (B, C, H, W) with the
    image in its first ``regressor.image_channels`` channels (the grey image for AFLW-PIFA).
    ``detach_detections``: stop the regressor's gradient at the detection maps (the regressor-only
    stage of section 3.1.4 freezes the detector anyway; the joint stage lets it flow).
    """

    def __init__(self, detector: CaleDetector, regressor: CaleRegressor):
        super().__init__()
        if detector.n_points != regressor.n_points:
            raise ValueError(f"detector ({detector.n_points}) and regressor ({regressor.n_points}) "
                             "disagree on the number of points")
        self.detector, self.regressor = detector, regressor
        self.n_points = detector.n_points

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.detector(x)
        image = x[:, :self.regressor.image_channels]
        return logits, self.regressor(image, torch.sigmoid(logits))

    def config(self) -> dict[str, Any]:
        return {"detector": self.detector.config(), "regressor": self.regressor.config()}


def cale(n_points: int = 34, *, image_channels: int = 1, width_divisor: int = 1, fc_channels: int = 4096,
         fc6_kernel: int = 7, regressor_kernels: Sequence[int] = REGRESSOR_KERNELS, batch_norm: bool = False,
         dropout: float = 0.5) -> Cale:
    """CALE at the thesis's scale (``width_divisor=1``: VGG-16 64...512, fc 4096, the regressor of
    Table 3.2) or narrower (every width divided by ``width_divisor``; ``fc_channels``, ``fc6_kernel``
    and ``regressor_kernels`` as given). ``image_channels``: 1 for grey faces (AFLW-PIFA), 3 for
    colour (the pets)."""
    if width_divisor < 1:
        raise ValueError(f"width_divisor must be >= 1, got {width_divisor}")
    vgg = tuple(max(w // width_divisor, 4) for w in VGG16_WIDTHS)
    reg = tuple(max(w // width_divisor, 4) for w in REGRESSOR_WIDTHS)
    detector = CaleDetector(n_points, widths=vgg, fc_channels=fc_channels, fc6_kernel=fc6_kernel, dropout=dropout,
                            in_channels=3, batch_norm=batch_norm)
    regressor = CaleRegressor(n_points, image_channels, widths=reg, kernels=regressor_kernels, batch_norm=batch_norm)
    return Cale(detector, regressor)


# --------------------------------------------------------------------------------------------------
# losses of section 3.1 (averaged over pixels; the thesis sums them, a constant factor that RMSprop's
# normalisation cancels, up to its epsilon)


def detector_loss(logits: torch.Tensor, discs: torch.Tensor) -> torch.Tensor:
    """Eq. 3.1: per-pixel sigmoid cross-entropy of the detector's logits against the disc targets
    (visible points only: an invisible point's target map is all zero)."""
    if logits.shape != discs.shape:
        raise ValueError(f"detector output {tuple(logits.shape)} does not match the disc targets {tuple(discs.shape)}")
    return F.binary_cross_entropy_with_logits(logits.float(), discs.float())


def regressor_loss(maps: torch.Tensor, gaussians: torch.Tensor) -> torch.Tensor:
    """Eq. 3.2: L2 between the regressed maps and the Gaussian targets of every point."""
    if maps.shape != gaussians.shape:
        raise ValueError(f"regressor output {tuple(maps.shape)} does not match the targets {tuple(gaussians.shape)}")
    return F.mse_loss(maps.float(), gaussians.float())


def cale_stage_loss(stage: str, detector_weight: float = 1.0):
    """The loss ``callable(outputs, batch)`` of a training stage of section 3.1.4: ``"detector"``
    (eq. 3.1 on the detector's output), ``"regressor"`` (eq. 3.2 on CALE's regressed maps) or
    ``"joint"`` (``detector_weight`` x eq. 3.1 + eq. 3.2, end to end)."""
    if stage == "detector":
        def loss(outputs, batch):
            logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            return detector_loss(logits, batch["discs"])
    elif stage == "regressor":
        def loss(outputs, batch):
            return regressor_loss(outputs[-1], batch["heatmaps"])
    elif stage == "joint":
        def loss(outputs, batch):
            return detector_weight * detector_loss(outputs[0], batch["discs"]) + regressor_loss(outputs[-1],
                                                                                               batch["heatmaps"])
    else:
        raise ValueError(f"unknown CALE stage {stage!r}; choose detector, regressor or joint")
    loss.__name__ = f"cale_{stage}"
    return loss


# --------------------------------------------------------------------------------------------------
# inference: an image and face boxes -> points and per-point visibility scores


class CaleAligner:
    """Landmarks of a trained CALE in face boxes: ``CaleAligner(model, input_size=96, zoom=0.75)``,
    then ``aligner(image, boxes) -> (points (F, N, 2) image px, visibility (F, N))``.

    The crop is the one CALE was trained on (FAN's crop of the box, times ``zoom``, resized to
    ``input_size``); the points are decoded from the regressor's maps; a point's visibility score is
    its detector map's sigmoid maximum (the detector was trained on visible points only, so a low
    score says "occluded"). ``from_run(folder)`` rebuilds a network the project trained, from its run
    folder (``fa-lib runs list``)."""

    def __init__(self, model: Cale, *, input_size: int, zoom: float = 1.0, decoder: str = "subpixel",
                 device: str | torch.device = "cpu"):
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        self.model = model.to(device).eval()
        self.input_size, self.zoom, self.decoder, self.device = int(input_size), float(zoom), decoder, device

    @classmethod
    def from_run(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "CaleAligner":
        folder = Path(folder)
        meta_path, weights = folder / "meta.json", folder / "model.pt"
        if not meta_path.is_file() or not weights.is_file():
            raise FileNotFoundError(f"{folder} is not a finished CALE run (needs meta.json and model.pt)")
        key = json.loads(meta_path.read_text())["key"]
        if key.get("network") != "cale":
            raise ValueError(f"{folder} holds a {key.get('network')!r} run, not a CALE")
        model = cale(**{k: tuple(v) if isinstance(v, list) else v for k, v in key["model"].items()})
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        inputs = key["inputs"]
        return cls(model, input_size=inputs["input_size"], zoom=inputs["zoom"], device=device)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if image.ndim not in (2, 3):
            raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
        channels = self.model.regressor.image_channels
        crops, matrices = [], []
        for box in boxes:
            center, scale = geometry.box_to_center_scale(box)
            matrix = geometry.rotation_scale_matrix(center, float(scale) * self.zoom, self.input_size)
            crop = geometry.warp_image(image, matrix, self.input_size).astype(np.float32)
            if crop.max() > 1.0 or image.dtype == np.uint8:
                crop = crop / 255.0
            crop = crop[..., None] if crop.ndim == 2 else crop
            crop = crop.mean(-1, keepdims=True) if channels == 1 else np.repeat(crop, 3 // crop.shape[-1], -1)
            crops.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))))
            matrices.append(matrix)
        if not crops:
            return np.zeros((0, self.model.n_points, 2), np.float32), np.zeros((0, self.model.n_points), np.float32)
        logits, maps = self.model(torch.stack(crops).to(self.device))
        points, _ = heatmaps_to_image_points(maps.float().cpu(), np.stack(matrices), decoder=self.decoder)
        visibility = torch.sigmoid(logits.float()).flatten(2).amax(-1).cpu().numpy()
        return points, visibility
