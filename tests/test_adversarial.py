"""Super-FAN's training loop (fa_lib.adversarial): the traps of GAN training, frozen networks that stay
frozen, and a killed run resumed to the same weights as an uninterrupted one."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from fa_lib.adversarial import STAGES, SRStage, SuperFanTrainer
from fa_lib.models.superfan import Critic, super_fan_generator
from fa_lib.train import StopTraining

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchrun_helpers import needs_torchrun, run_two_processes  # noqa: E402


class Pairs(Dataset):
    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.hr = torch.rand(n, 3, 64, 64, generator=g)
        self.lr = torch.nn.functional.avg_pool2d(self.hr, 4)

    def __len__(self):
        return len(self.hr)

    def __getitem__(self, i):
        return {"image_lr": self.lr[i], "image_hr": self.hr[i]}


class TinyFan(nn.Module):
    """64 px image -> 5 heatmaps of 16 px (stands in for a FAN in these tests)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 5, 3, stride=2, padding=1))

    def forward(self, x):
        return [self.net(x)]


class TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.a(x))
        return [a, torch.relu(self.b(a))]


def _networks(seed: int = 0):
    torch.manual_seed(seed)
    fan = TinyFan()
    return dict(generator=super_fan_generator(width=4, blocks=(1, 1, 1)), critic=Critic(width=4),
                student=copy.deepcopy(fan), teacher=copy.deepcopy(fan), features=TinyFeatures())


def _trainer(stage="super-fan", **kwargs):
    nets = _networks()
    options = dict(iterations=4, batch_size=4, lr=1e-3, device="cpu", seed=3)
    options.update(kwargs)
    return SuperFanTrainer(nets.pop("generator"), Pairs(), stage, **nets, **options)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


def test_critic_step_moves_only_the_critic_and_generator_step_only_the_generator():
    t = _trainer("gan")
    data = Pairs()
    low, high = data.lr[:4], data.hr[:4]
    g0, d0 = _state(t.generator), _state(t.critic)
    t.critic_step(low, high)
    assert _changed(d0, t.critic)
    g_params = dict(t.generator.named_parameters())
    assert all(torch.equal(g0[k], p) for k, p in g_params.items())  # no generator weight moved
    assert set(id(p) for p in t.optimizers["critic"].param_groups[0]["params"]) == {id(p) for p in t.critic.parameters()}
    d1 = _state(t.critic)
    logged = t.generator_step(low, high)
    assert all(torch.equal(d1[k], v) for k, v in t.critic.state_dict().items())
    assert _changed(g0, t.generator)
    assert {"pixel", "feature", "heatmap", "adversarial", "loss"} <= set(logged)


def test_frozen_networks_stay_frozen_and_the_student_trains_only_end_to_end():
    for stage, student_moves in (("gan", False), ("super-fan", True)):
        t = _trainer(stage)
        teacher, features, student = _state(t.teacher), _state(t.features), _state(t.student)
        t.fit()
        assert not _changed(teacher, t.teacher) and not _changed(features, t.features)
        assert _changed(student, t.student) is student_moves
        assert not t.teacher.training and not t.features.training


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    full = _trainer(iterations=6, checkpoint_dir=tmp_path / "full")
    full.fit()

    def kill(trainer):
        if trainer.step == 3:
            raise StopTraining

    _trainer(iterations=6, checkpoint_dir=tmp_path / "resumed", checkpoint_every=1, callbacks=[kill]).fit()
    resumed = _trainer(iterations=6, checkpoint_dir=tmp_path / "resumed")
    resumed.fit()
    assert resumed.step == 6
    for name in ("generator", "critic", "student"):
        a, b = getattr(full, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]
    with pytest.raises(ValueError, match="settings changed"):
        _trainer(iterations=6, lr=5e-4, checkpoint_dir=tmp_path / "resumed").fit()


def test_stages_check_their_networks_and_log_their_terms():
    nets = _networks()
    with pytest.raises(ValueError, match="critic"):
        SuperFanTrainer(nets["generator"], Pairs(), "gan", student=nets["student"], teacher=nets["teacher"],
                        features=nets["features"], iterations=1, device="cpu")
    with pytest.raises(ValueError, match="no loss"):
        SRStage("nothing", pixel=False)
    history = _trainer("pixel", iterations=2).fit()
    assert set(history[-1]) >= {"stage", "step", "loss", "pixel"} and "adversarial" not in history[-1]
    assert list(STAGES) == ["pixel", "pixel-feature", "pixel-feature-heatmap", "gan", "super-fan"]


DDP_SCRIPT = """
from test_adversarial import _trainer

out = sys.argv[1]
ckpt = os.path.join(out, "ckpt")
_trainer(iterations=4, batch_size=2, checkpoint_dir=ckpt, checkpoint_every=1, callbacks=[stop_at_2]).fit()
resumed = _trainer(iterations=4, batch_size=2, checkpoint_dir=ckpt)
resumed.fit()
assert resumed.step == 4 and resumed.world_size == 2
torch.save({name: net.state_dict() for name, net in resumed.trained().items()}, os.path.join(out, f"rank{rank}.pt"))
dist.destroy_process_group()
"""


@needs_torchrun
def test_super_fan_stage_trains_under_torchrun_on_gloo(tmp_path):
    """Two CPU processes, the end-to-end stage (generator, critic and student wrapped in DDP), killed
    and resumed half-way: the replicas end identical."""
    run_two_processes(DDP_SCRIPT, tmp_path, str(tmp_path))
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert set(rank0) == {"generator", "critic", "student"}
    for name in rank0:
        # DDP keeps the trained parameters identical (batch-norm statistics are each rank's own)
        for key, value in rank0[name].items():
            if "running_" not in key and "num_batches" not in key:
                assert torch.equal(value, rank1[name][key]), f"{name}.{key}"
