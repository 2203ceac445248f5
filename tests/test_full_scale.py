"""Every network at the thesis's full scale runs once: one forward and backward pass with its training
loss on CPU at batch 1 (output shapes, a finite loss, gradients reaching the first layer). The full
profile is for GPU users with the real data; these tests are what proves, on any machine, that its
networks are built and trainable as the thesis specifies."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fa_lib.adversarial import SuperFanTrainer
from fa_lib.experiments.ch5.scale import (BLOCK_SPECS, BOTTLENECK_REAL, BOTTLENECK_WIDER_REAL, OURS, OURS_AVG_POOL,
                                          OURS_IMPROVED, OURS_REAL, OURS_REDUCED, OURS_RELU, PARSING_ROWS,
                                          THESIS_HG_DEPTH, THESIS_WIDTH, cardinality_spec, depth_spec, stacked_spec)
from fa_lib.experiments.ch6.context import Chapter6, make_methods
from fa_lib.models import FAN
from fa_lib.models.cale import cale, cale_stage_loss
from fa_lib.models.depth import ResNetDepth
from fa_lib.models.superfan import Critic, ResNet50Features, VGG19Features
from fa_lib.profiles import get_profile
from fa_lib.train import stacked_loss

pytestmark = pytest.mark.slow
THESIS_INPUT = 256


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _first_grad(model: torch.nn.Module) -> torch.Tensor:
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None, "no gradient reached the first layer"
    return first.grad


def _fan_step(net: FAN, outputs: int = 68, loss: str = "l2") -> None:
    x = torch.rand(1, 3, THESIS_INPUT, THESIS_INPUT)
    out = net(x)
    assert len(out) == net.config["num_modules"] and out[-1].shape == (1, outputs, 64, 64)
    target = (torch.rand(1, outputs, 64, 64) if loss == "l2" else torch.randint(0, outputs, (1, 64, 64)))
    value = stacked_loss(out, target, loss)
    assert math.isfinite(float(value.detach()))
    value.backward()
    assert torch.isfinite(_first_grad(net)).all()


def test_fan_4_stacks_at_256_px():
    """Chapter 4's FAN (4 stacks, width 256, 256 px crops, 64 px heatmaps)."""
    _fan_step(FAN())


def test_depth_network_resnet_152():
    """Chapter 4's depth network: ResNet-152 on the crop + 68 heatmaps at 256 px."""
    net = ResNetDepth()
    depth = net(torch.rand(1, 3 + 68, THESIS_INPUT, THESIS_INPUT))
    assert depth.shape == (1, 68)
    loss = F.mse_loss(depth, torch.rand(1, 68))
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(_first_grad(net)).all()


CH5_NETWORKS = {
    "Ours (Fig. 5.3e)": OURS, "Ours, real (Table 5.5)": OURS_REAL, "Ours reduced (Table 5.4)": OURS_REDUCED,
    "Ours, avg pool (Table 5.8)": OURS_AVG_POOL, "Ours + ReLU (Table 5.9)": OURS_RELU,
    "Ours, improved HG (Table 5.14)": OURS_IMPROVED, "Bottleneck, real (Table 5.1)": BOTTLENECK_REAL,
    "Bottleneck wider, real (Table 5.5)": BOTTLENECK_WIDER_REAL,
    **{f"block {name} (Fig. 5.3, Tables 5.2-5.3)": spec for name, spec in BLOCK_SPECS.items() if name != "hierarchical"},
    "depth 4 (Fig. 5.7)": depth_spec(4), "cardinality 2 (Fig. 5.8)": cardinality_spec(2),
    "2 stacks (Table 5.15)": stacked_spec(2),
}


@pytest.mark.parametrize("name", list(CH5_NETWORKS))
def test_chapter_5_networks_at_the_thesis_scale(name):
    spec = CH5_NETWORKS[name]
    _fan_step(FAN(**spec.fan_kwargs(THESIS_WIDTH, THESIS_HG_DEPTH, (64, 128))))


def test_chapter_5_face_parsing_networks():
    """Table 5.16: the networks with 7 class maps and the log-softmax loss."""
    for _, spec in PARSING_ROWS:
        _fan_step(FAN(**replace(spec, outputs=7).fan_kwargs(THESIS_WIDTH, THESIS_HG_DEPTH, (64, 128))), 7,
                  "log_softmax")


def test_cale_at_the_thesis_scale():
    """Chapter 3's CALE (VGG-16 detector with fc6 7x7 / fc7 4096, the regressor's 9-15 px kernels) on a
    256 px grey crop, with the joint loss."""
    model = cale()
    logits, maps = model(torch.rand(1, 1, THESIS_INPUT, THESIS_INPUT))
    assert logits.shape == maps.shape == (1, 34, THESIS_INPUT, THESIS_INPUT)
    batch = {"discs": (torch.rand(1, 34, THESIS_INPUT, THESIS_INPUT) > 0.99).float(),
             "heatmaps": torch.rand(1, 34, THESIS_INPUT, THESIS_INPUT)}
    loss = cale_stage_loss("joint")((logits, maps), batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(_first_grad(model)).all()


class _OnePair(Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        return {"image_lr": torch.rand(3, 16, 16, generator=g), "image_hr": torch.rand(3, 64, 64, generator=g)}


def test_super_fan_at_the_thesis_scale():
    """Chapter 6 end to end at the full profile's scale: the 12-3-2 generator of width 64, the critic, a
    2-stack FAN of width 256 on the 64 px faces (student and frozen teacher), ResNet-50's B1-B3; one
    critic step and one generator + FAN step of eq. 6.5."""
    ctx = Chapter6.__new__(Chapter6)  # only the builders, no data
    ctx.setup = get_profile("full").ch6
    generator = ctx.build_generator("12-3-2")
    teacher, student = ctx.build_fan(), ctx.build_fan()
    trainer = SuperFanTrainer(generator, _OnePair(), "super-fan", critic=Critic(width=ctx.setup.critic_width),
                              student=student, teacher=teacher, features=ResNet50Features(), batch_size=1,
                              iterations=1, device="cpu")
    history = trainer.fit()
    assert set(history[-1]) >= {"pixel", "feature", "heatmap", "adversarial", "critic_loss", "gradient_penalty"}
    assert all(math.isfinite(v) for k, v in history[-1].items() if isinstance(v, float))
    with torch.no_grad():
        assert generator(torch.rand(1, 3, 16, 16)).shape == (1, 3, 64, 64)
        assert teacher(torch.rand(1, 3, 64, 64))[-1].shape == (1, 68, 16, 16)


def test_sr_gan_baseline_at_the_thesis_scale():
    """SR-ResNet (16 blocks, width 64) fine-tuned with VGG-19's conv5_4 features and the DCGAN loss."""
    ctx = Chapter6.__new__(Chapter6)
    ctx.setup = get_profile("full").ch6
    srgan = make_methods()["sr-gan"]
    trainer = SuperFanTrainer(ctx.build_generator("sr-resnet"), _OnePair(), srgan.stage, critic=Critic(width=64),
                              features=VGG19Features(), weights=dict(srgan.weights), batch_size=1, iterations=1,
                              device="cpu")
    history = trainer.fit()
    assert {"feature", "adversarial", "d_real", "d_fake"} <= set(history[-1])
    assert all(math.isfinite(v) for k, v in history[-1].items() if isinstance(v, float))
