"""Super-FAN's networks and losses (thesis chapter 6): the generator's layouts, the WGAN-GP critic and
penalty, and the pixel, feature and heatmap losses, each against a trap of the chapter's checklist."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fa_lib.models.superfan import (LOSS_WEIGHTS, Critic, ResidualBlock, ResNet50Features, SRGenerator,
                                    critic_loss, feature_loss, generator_adversarial_loss, gradient_penalty,
                                    heatmap_loss, pixel_loss, sr_resnet, super_fan_generator)


def _blocks_per_stage(g: SRGenerator) -> list[int]:
    return [sum(isinstance(m, ResidualBlock) for m in stage) for stage in g.stages]


def test_super_fan_generator_is_12_3_2_relu_without_long_skip():
    g = super_fan_generator(width=8).eval()
    assert _blocks_per_stage(g) == [12, 3, 2]
    assert not any(isinstance(m, nn.PReLU) for m in g.modules())
    assert not g.long_skip and not g.long_skips
    assert g(torch.rand(2, 3, 16, 16)).shape == (2, 3, 64, 64)
    block = g.stages[0][0].body
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert g.config()["blocks"] == (12, 3, 2)


def test_sr_resnet_and_the_with_skip_variant():
    base = sr_resnet(width=8).eval()
    assert _blocks_per_stage(base) == [16, 0, 0] and base.long_skip
    assert any(isinstance(m, nn.PReLU) for m in base.modules())
    assert base(torch.rand(1, 3, 16, 16)).shape == (1, 3, 64, 64)
    skip = super_fan_generator(width=8, long_skips=True).eval()
    plain = super_fan_generator(width=8).eval()
    skip.load_state_dict(plain.state_dict())  # same weights: only the two skips differ
    x = torch.rand(1, 3, 16, 16)
    assert not torch.allclose(skip(x), plain(x))
    with pytest.raises(ValueError, match="not both"):
        SRGenerator(long_skip=True, long_skips=True)
    with pytest.raises(ValueError, match="three"):
        SRGenerator((12, 3))
    with pytest.raises(ValueError, match="activation"):
        SRGenerator(activation="tanh")


def test_critic_has_no_batch_norm_and_no_sigmoid():
    critic = Critic(width=8)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in critic.modules())
    scores = critic(torch.rand(5, 3, 64, 64) * 50)
    assert scores.shape == (5,)
    with pytest.raises(ValueError, match="power of two"):
        Critic(size=48)


class LinearCritic(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


class QuadraticCritic(nn.Module):
    """D(x) = s * ||x||^2 / 2: the gradient at x is s * x, different for every sample."""

    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.s * (x ** 2).flatten(1).sum(1) / 2


def test_gradient_penalty_of_a_linear_critic_is_exact():
    critic = LinearCritic((3, 8, 8))
    real, fake = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    expected = (critic.w.detach().norm() - 1) ** 2
    assert float(gradient_penalty(critic, real, fake).detach()) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_penalty_is_per_sample_with_one_coefficient_each():
    critic = QuadraticCritic()
    real = torch.zeros(3, 2, 4, 4)
    fake = torch.stack([torch.full((2, 4, 4), v) for v in (1.0, 2.0, 3.0)])
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand((3, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    points = alpha * real + (1 - alpha) * fake
    expected = ((1.5 * points.flatten(1).norm(dim=1) - 1) ** 2).mean()
    penalty = gradient_penalty(critic, real, fake, generator=g)
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-5)
    penalty.backward()  # differentiable with respect to the critic's parameters (create_graph)
    assert critic.s.grad is not None and float(critic.s.grad) != 0


def test_critic_step_never_reaches_the_generator():
    gen = super_fan_generator(width=4, blocks=(1, 1, 1))
    critic = Critic(width=4)
    fake = gen(torch.rand(2, 3, 16, 16))
    loss, terms = critic_loss(critic, torch.rand(2, 3, 64, 64), fake)
    loss.backward()
    assert all(p.grad is None for p in gen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    assert set(terms) == {"critic_real", "critic_fake", "gradient_penalty", "wasserstein"}
    # the generator's term is minus the critic's score of its images (not eq. 6.3 itself)
    with torch.no_grad():
        assert float(generator_adversarial_loss(critic, fake)) == pytest.approx(-float(critic(fake).mean()), rel=1e-5)


def test_pixel_and_heatmap_losses_reductions():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert float(pixel_loss(a, b)) == 1.0 and float(pixel_loss(a, 2 * b, "l1")) == 2.0
    student = torch.zeros(2, 5, 4, 4, requires_grad=True)
    teacher = torch.ones(2, 5, 4, 4, requires_grad=True)
    loss = heatmap_loss(student, teacher)
    assert float(loss.detach()) == 16.0  # summed over the 4x4 pixels, averaged over maps and images
    loss.backward()
    assert teacher.grad is None and student.grad is not None  # the teacher's maps are targets
    assert float(heatmap_loss(student, 3 * teacher, "l1").detach()) == 48.0
    with pytest.raises(ValueError, match="l2 or l1"):
        heatmap_loss(student, teacher, "huber")


def test_feature_loss_compares_the_two_images_and_trains_only_the_generator():
    features = ResNet50Features()
    features.train()
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    hr = torch.rand(2, 3, 64, 64)
    assert float(feature_loss(features, hr, hr)) == 0.0
    sr = torch.rand(2, 3, 64, 64, requires_grad=True)
    loss = feature_loss(features, sr, hr)
    assert float(loss.detach()) > 0
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in features.parameters())
    levels = features(hr)
    assert [t.shape[1:] for t in levels] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4)]


def test_torchvision_resnet50_weights_load_strictly():
    reference = ResNet50Features()
    state = {k: v.clone() for k, v in reference.net.state_dict().items()}
    # torchvision's names and shapes
    assert state["conv1.weight"].shape == (64, 3, 7, 7) and state["fc.weight"].shape == (1000, 2048)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert state["layer3.5.bn3.running_var"].shape == (1024,)
    assert sum(k.startswith("layer3.") and k.endswith("conv1.weight") for k in state) == 6
    features = ResNet50Features()
    features.load_torchvision(state, source="test weights")
    assert features.source == "test weights" and not features.training
    del state["layer4.2.conv3.weight"]
    with pytest.raises(RuntimeError, match="Missing"):
        ResNet50Features().load_torchvision(state)


def test_eq_6_5_weights():
    assert LOSS_WEIGHTS == {"pixel": 0.5, "feature": 0.5, "heatmap": 0.1, "adversarial": 0.1}
