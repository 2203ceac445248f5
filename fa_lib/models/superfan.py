"""Super-FAN's networks and losses (thesis chapter 6, section 6.2, Figs. 6.2-6.3, eqs. 6.1-6.5).

- :class:`SRGenerator` (section 6.2.1, Fig. 6.3a): 16x16 -> 64x64 super-resolution with residual
  blocks (3x3 conv, BN, ReLU, 3x3 conv, BN, identity add) distributed **12-3-2** over the 16, 32
  and 64 px resolutions and no long skip connection. The same constructor builds the SR-ResNet
  baseline (:func:`sr_resnet`: 16-1-1, PReLU, a long skip over the low-resolution blocks) and the
  "with skip" variant of Table 6.4 (:func:`super_fan_generator` with ``long_skips=True``).
- :class:`Critic` (section 6.2.2): the DCGAN discriminator without batch normalisation, one scalar
  per image, no sigmoid (a WGAN critic).
- :func:`gradient_penalty`, :func:`critic_loss`, :func:`generator_adversarial_loss`: WGAN-GP
  (eq. 6.3), the interpolation coefficient drawn per sample and the penalty on each sample's
  gradient norm.
- :class:`ResNet50Features`: ResNet-50's blocks 1-3 (torchvision's ``resnet50`` keys, so a user's
  ImageNet state_dict loads strictly), frozen, for the feature loss of eq. 6.2.
- :class:`VGG19Features`: VGG-19 to conv5_4 (torchvision's ``vgg19`` keys), the SR-GAN baseline's
  feature loss; :class:`FeaturePretraining`: how the project pretrains stand-ins for both when no
  ImageNet weights are given; :func:`dcgan_critic_loss`/:func:`dcgan_generator_loss`: SR-GAN's GAN.
- :class:`SuperFan`: the generator and its FAN at test time.
- :func:`pixel_loss` (eq. 6.1), :func:`feature_loss` (eq. 6.2), :func:`heatmap_loss` (eq. 6.4) and
  :data:`LOSS_WEIGHTS` (eq. 6.5: alpha = beta = 0.5, gamma = zeta = 0.1).

Choices the thesis leaves open, each a constructor argument and recorded in ``config()``: width 64,
a 3x3 convolution + pixel shuffle (x2) + activation as the upsampler between resolutions, 9x9 head and
tail convolutions (SRResNet's), a linear output in the images' [0, 1] range (clamped only for
evaluation), and, for the "with skip" variant, one long skip around the 16 px blocks and one around
the 32 px blocks.

Reductions (they set what the weights of eq. 6.5 mean): eq. 6.1 is the mean over pixels and
channels; eq. 6.2 sums over channels and averages over positions, per block, and the three blocks are
added; eq. 6.4 sums over pixels and averages over landmarks (and images); the critic's terms are
means over the batch.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fa_lib.models.depth import ResNetDepth
from fa_lib.models.fan import FAN

#: eq. 6.5: l = alpha * pixel + beta * feature + gamma * heatmap + zeta * adversarial
LOSS_WEIGHTS = {"pixel": 0.5, "feature": 0.5, "heatmap": 0.1, "adversarial": 0.1}
#: the usual WGAN-GP penalty weight (the thesis does not state one)
GP_WEIGHT = 10.0
#: torchvision's ImageNet normalisation, which ImageNet ResNet-50 weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ACTIVATIONS = ("relu", "prelu")
#: the constructor arguments of :class:`SRGenerator` its ``config()`` records
GENERATOR_ARGS = ("blocks", "width", "activation", "long_skip", "long_skips", "head_kernel", "tail_kernel", "channels",
                  "output")
#: how the generator's last convolution becomes the image (see :class:`SRGenerator`)
OUTPUTS = ("direct", "bilinear-residual")


def _activation(name: str, channels: int) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class ResidualBlock(nn.Module):
    """The SR residual block (Gross & Wilber; SRGAN): conv 3x3, BN, activation, conv 3x3, BN, + x."""

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  _activation(activation, channels), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRGenerator(nn.Module):
    """x4 face super-resolution (Fig. 6.3): head conv, residual blocks per resolution, two x2
    upsamplers between them, tail conv.

    ``blocks``: residual blocks at 16, 32 and 64 px (Super-FAN 12-3-2; SR-ResNet 16-0-0 with its
    upsampling blocks counted as the "1-1"); ``width`` channels; ``activation`` "relu" (Super-FAN) or
    "prelu" (SR-ResNet); ``long_skip``: SR-ResNet's global skip over the 16 px blocks;
    ``long_skips``: the "with skip" variant of Table 6.4 (a skip around the 16 px blocks and one around
    the 32 px blocks); ``head_kernel``/``tail_kernel`` (9, 9); ``channels`` of the images (3);
    ``output``: ``"direct"`` (the tail convolution is the image) or ``"bilinear-residual"`` (the tail
    convolution is added to the input's bilinear x4 upsampling, so an untrained generator already
    outputs the bilinear face (its tail starts at zero) and training learns only the missing detail;
    the thesis does not say how its output is parameterised).
    """

    def __init__(self, blocks: Sequence[int] = (12, 3, 2), *, width: int = 64, activation: str = "relu",
                 long_skip: bool = False, long_skips: bool = False, head_kernel: int = 9, tail_kernel: int = 9,
                 channels: int = 3, output: str = "direct"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != 3 or min(blocks) < 0:
            raise ValueError(f"blocks are three non-negative counts (16, 32, 64 px), got {blocks}")
        if head_kernel % 2 != 1 or tail_kernel % 2 != 1:
            raise ValueError(f"head and tail kernels must be odd, got {head_kernel}, {tail_kernel}")
        if long_skip and long_skips:
            raise ValueError("choose SR-ResNet's long_skip or the two long_skips of Table 6.4, not both")
        _activation(activation, 1)
        self.head = nn.Sequential(nn.Conv2d(channels, width, head_kernel, padding=head_kernel // 2),
                                  _activation(activation, width))
        self.stages = nn.ModuleList(nn.Sequential(*[ResidualBlock(width, activation) for _ in range(n)])
                                    for n in blocks)
        # SR-ResNet closes its low-resolution blocks with a conv + BN before the global skip
        self.lr_close = (nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
                         if long_skip else None)
        self.upsamplers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), _activation(activation, width))
            for _ in range(2))
        self.tail = nn.Conv2d(width, channels, tail_kernel, padding=tail_kernel // 2)
        self.long_skip, self.long_skips = bool(long_skip), bool(long_skips)
        self._config = dict(blocks=blocks, width=int(width), activation=activation, long_skip=self.long_skip,
                            long_skips=self.long_skips, head_kernel=int(head_kernel), tail_kernel=int(tail_kernel),
                            channels=int(channels), upsampler="conv3x3 + pixel shuffle x2 + activation",
                            output=output, range="linear, images in [0, 1]")
        self.output = output
        if output == "bilinear-residual":  # start exactly at the bilinear face
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        x = self.head(low)
        for k, stage in enumerate(self.stages):
            y = stage(x)
            if k == 0 and self.lr_close is not None:
                y = self.lr_close(y)
            if self.long_skip and k == 0 or self.long_skips and k < 2:
                y = y + x
            x = self.upsamplers[k](y) if k < 2 else y
        if self.output == "bilinear-residual":
            return self.tail(x) + F.interpolate(low, scale_factor=4, mode="bilinear", align_corners=False)
        return self.tail(x)


def super_fan_generator(width: int = 64, *, blocks: Sequence[int] = (12, 3, 2), long_skips: bool = False,
                        **kwargs: Any) -> SRGenerator:
    """Super-FAN's generator (section 6.2.1): 12-3-2 blocks, ReLU, no long skip (``long_skips=True``:
    the "with skip" variant of Table 6.4)."""
    return SRGenerator(blocks, width=width, activation="relu", long_skips=long_skips, **kwargs)


def sr_resnet(width: int = 64, *, blocks: int = 16, **kwargs: Any) -> SRGenerator:
    """The SR-ResNet baseline (Ledig et al., Fig. 6.3b): 16 blocks at low resolution, PReLU, a long
    skip, one upsampling block per x2 (the "1-1" of its 16-1-1)."""
    return SRGenerator((blocks, 0, 0), width=width, activation="prelu", long_skip=True, **kwargs)


class Critic(nn.Module):
    """The WGAN critic (section 6.2.2): DCGAN's discriminator without batch normalisation (the gradient
    penalty treats samples independently), 4x4 stride-2 convolutions with LeakyReLU 0.2 down to 4x4,
    then a 4x4 valid convolution to one scalar per image; no sigmoid."""

    def __init__(self, channels: int = 3, width: int = 64, size: int = 64):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        layers: list[nn.Module] = []
        c_in, c_out, side = channels, width, size
        while side > 4:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c_in, c_out, side = c_out, c_out * 2, side // 2
        layers.append(nn.Conv2d(c_in, 1, 4))
        self.body = nn.Sequential(*layers)
        self._config = dict(channels=channels, width=width, size=size)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1).squeeze(1)


def _interpolates(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Points drawn uniformly on the segments between real and fake pairs, one coefficient per sample."""
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} images differ in shape")
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=generator)
    return (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)


def _penalty(scores: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x)||_2 - 1)^2], the norm over each sample's whole gradient; differentiable with
    respect to the critic's parameters (create_graph)."""
    (grad,) = torch.autograd.grad(scores.sum(), points, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's penalty (eq. 6.3's last term, without lambda): E[(||grad_x D(x)||_2 - 1)^2] at points x
    drawn uniformly on the segments between real and fake pairs, one coefficient per sample, the norm
    taken over each sample's whole gradient. Differentiable with respect to the critic's parameters."""
    points = _interpolates(real, fake, generator)
    return _penalty(critic(points), points)


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = GP_WEIGHT,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 6.3, the critic's loss: E[D(fake)] - E[D(real)] + lambda * penalty. ``fake`` is detached
    (the critic's step must not reach the generator). The real, fake and interpolated images are
    scored in one batch: one pass through a DistributedDataParallel wrapper per backward, and the
    same scores as three passes since the critic has no batch normalisation. Returns the loss and its
    terms."""
    fake = fake.detach()
    n = real.shape[0]
    points = _interpolates(real, fake, generator)
    scores = critic(torch.cat([real, fake, points]))
    d_real, d_fake = scores[:n].mean(), scores[n:2 * n].mean()
    penalty = _penalty(scores[2 * n:], points)
    loss = d_fake - d_real + gp_weight * penalty
    terms = {k: float(v.detach()) for k, v in (("critic_real", d_real), ("critic_fake", d_fake),
                                              ("gradient_penalty", penalty), ("wasserstein", d_real - d_fake))}
    return loss, terms


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial term (what zeta multiplies in eq. 6.5): -E[D(G(x))]."""
    return -critic(fake).mean()


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Eq. 6.1: mean squared (``"l2"``) or absolute (``"l1"``, Table 6.3) error over pixels and channels."""
    if sr.shape != hr.shape:
        raise ValueError(f"super-resolved {tuple(sr.shape)} and high-resolution {tuple(hr.shape)} images differ")
    if kind == "l2":
        return F.mse_loss(sr, hr)
    if kind == "l1":
        return F.l1_loss(sr, hr)
    raise ValueError(f"pixel loss kind must be l2 or l1, got {kind!r}")


class FrozenFeatures(nn.Module):
    """A feature network for a perceptual loss: frozen (no gradients to its weights, always in eval
    mode so its batch-norm statistics never change) unless unfrozen (:meth:`unfreeze`) for pretraining.
    Its outputs are multiplied by ``scale`` (1 unless :func:`calibrate_feature_scale` set it; not part
    of the state_dict, so ImageNet files load strictly)."""

    frozen = True

    def _init_scale(self) -> None:
        self.register_buffer("scale", torch.ones(()), persistent=False)

    def freeze(self):
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def unfreeze(self):
        """Trainable again (the project's stand-in pretraining, :class:`FeaturePretraining`)."""
        self.frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)


class ResNet50Features(FrozenFeatures):
    """ResNet-50's blocks B1-B3 (torchvision ``layer1``-``layer3``) as a frozen feature extractor for
    eq. 6.2. Images in [0, 1] are normalised with ImageNet's mean and std (what ImageNet weights
    expect); grey images are repeated to three channels. ``load_torchvision(state_dict)`` loads a
    torchvision ``resnet50().state_dict()`` strictly. ``source`` says where the weights came from (an
    ImageNet file, or the project's stand-in); it is recorded with every result that uses them."""

    def __init__(self, source: str = "random (untrained)"):
        super().__init__()
        self.net = ResNetDepth(in_channels=3, num_outputs=1000, layers=(3, 4, 6, 3))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_scale()
        self.source = source
        self.freeze()

    out_channels = 1024  # layer3's

    def load_torchvision(self, state_dict: Mapping[str, torch.Tensor], source: str = "ImageNet") -> None:
        self.net.load_state_dict(state_dict, strict=True)
        self.source = source
        self.freeze()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = (images - self.mean) / self.std
        n = self.net
        x = n.maxpool(F.relu(n.bn1(n.conv1(x))))
        out = []
        for layer in (n.layer1, n.layer2, n.layer3):
            x = layer(x)
            out.append(x * self.scale)
        return out


#: the convolutions of torchvision's ``vgg19().features`` (widths; "M" a 2x2 max-pool)
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


class VGG19Features(FrozenFeatures):
    """VGG-19 up to conv5_4 and its ReLU (SRGAN's "VGG54" content layer, the SR-GAN baseline's feature
    loss), in torchvision's ``vgg19().features`` layout (``features.<index>`` keys, the final max-pool
    left out), so ``load_torchvision`` loads an ImageNet ``vgg19`` state_dict strictly (its
    ``classifier`` keys ignored). ``width_divisor`` > 1 divides every width (a smaller stand-in; such
    weights cannot come from ImageNet). Frozen and normalised like :class:`ResNet50Features`."""

    def __init__(self, width_divisor: int = 1, source: str = "random (untrained)"):
        super().__init__()
        if width_divisor < 1:
            raise ValueError(f"width_divisor must be >= 1, got {width_divisor}")
        layers: list[nn.Module] = []
        c_in = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c_out = max(1, int(item) // width_divisor)
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_channels, self.width_divisor = c_in, int(width_divisor)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_scale()
        self.source = source
        self.freeze()

    def load_torchvision(self, state_dict: Mapping[str, torch.Tensor], source: str = "ImageNet") -> None:
        if self.width_divisor != 1:
            raise ValueError(f"ImageNet VGG-19 weights need width_divisor=1, this network has {self.width_divisor}")
        own = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        if not own:
            raise ValueError("the state_dict has no 'features.*' keys (torchvision's vgg19 layout)")
        self.load_state_dict(own, strict=True)
        self.source = source
        self.freeze()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        # always float32: without batch normalisation the deep activations of a stand-in differ between
        # images by less than bfloat16 resolves (measured: a feature loss of 0.0008 read as 2,720)
        with torch.autocast(device_type=images.device.type, enabled=False):
            return [self.features((images.float() - self.mean) / self.std) * self.scale]


class FeaturePretraining(nn.Module):
    """A feature network (:class:`ResNet50Features` or :class:`VGG19Features`) with a linear head
    regressing the 68 landmarks (x, y in [-1, 1]) from its last map pooled to 4x4: how the project
    pretrains the **stand-ins** for ImageNet weights on the synthetic faces (nothing can be downloaded
    here). Only the feature network is kept afterwards."""

    def __init__(self, features: nn.Module, n_points: int = 68):
        super().__init__()
        self.features = features.unfreeze()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(16 * features.out_channels, 2 * n_points)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(images)[-1]).flatten(1))


class SuperFan(nn.Module):
    """Super-FAN at test time (Fig. 6.2): the generator's 64 px face and the FAN's heatmaps on it.
    ``forward(low)`` returns ``(super_resolved, heatmaps of every stack)``."""

    def __init__(self, generator: nn.Module, fan: nn.Module):
        super().__init__()
        self.generator, self.fan = generator, fan

    @property
    def config(self) -> dict[str, Any]:
        """What :func:`fa_lib.models.checkpoints.build_model` rebuilds it from."""
        g = self.generator.config()
        return {"generator": {k: g[k] for k in GENERATOR_ARGS}, "fan": dict(self.fan.config)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SuperFan":
        g = dict(config["generator"])
        return cls(SRGenerator(g.pop("blocks"), **g), FAN(**config["fan"]))

    def forward(self, low: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        sr = self.generator(low)
        return sr, self.fan(sr)


def dcgan_critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The SR-GAN baseline's discriminator loss (DCGAN's sigmoid cross-entropy, as SRGAN uses): real
    images labelled 1, generated ones 0 (``fake`` detached), scored in one batch."""
    n = real.shape[0]
    logits = critic(torch.cat([real, fake.detach()]))
    labels = torch.cat([torch.ones(n, device=real.device), torch.zeros(n, device=real.device)])
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
    with torch.no_grad():
        p = torch.sigmoid(logits.float())
    return loss, {"d_real": float(p[:n].mean()), "d_fake": float(p[n:].mean())}


def dcgan_generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """SRGAN's generator adversarial term: -log D(G(x)) (the non-saturating form)."""
    logits = critic(fake).float()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def feature_loss(features: nn.Module, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Eq. 6.2 summed over ResNet-50's blocks 1-3: per block, the squared difference summed over
    channels and averaged over positions (and images). The high-resolution branch carries no gradient;
    the super-resolved one passes its gradient to the generator through the frozen network."""
    with torch.no_grad():
        targets = [t.detach() for t in features(hr)]
    total = sr.new_zeros(())
    for pred, target in zip(features(sr), targets):
        total = total + ((pred - target) ** 2).sum(1).mean()
    return total


@torch.no_grad()
def calibrate_feature_scale(features: FrozenFeatures, sr: torch.Tensor, hr: torch.Tensor) -> float:
    """Set ``features.scale`` so that eq. 6.2's loss of ``sr`` against ``hr`` equals their pixel loss
    (eq. 6.1), and return it. For a stand-in feature network, whose activations have no natural scale
    (ImageNet weights would set one), this gives eq. 6.5's equal weights alpha = beta = 0.5 an equal
    say: ``sr`` is a baseline's output, e.g. bilinear upsampling."""
    features.scale.fill_(1.0)
    feature, pixel = float(feature_loss(features, sr, hr)), float(pixel_loss(sr, hr))
    if not feature > 0 or not pixel > 0:
        raise ValueError(f"cannot calibrate on identical images (feature loss {feature}, pixel loss {pixel})")
    features.scale.fill_((pixel / feature) ** 0.5)
    return float(features.scale)


def heatmap_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Eq. 6.4: the student FAN's heatmaps on the super-resolved face against the frozen teacher FAN's
    on the high-resolution face (detached), squared (``"l2"``) or absolute (``"l1"``, Table 6.5)
    difference summed over pixels and averaged over landmarks and images."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} heatmaps differ")
    diff = student - teacher.detach()
    if kind == "l2":
        per_map = (diff ** 2).flatten(2).sum(-1)
    elif kind == "l1":
        per_map = diff.abs().flatten(2).sum(-1)
    else:
        raise ValueError(f"heatmap loss kind must be l2 or l1, got {kind!r}")
    return per_map.mean()
