"""Tests of fa_lib.train: losses, schedule, split, sampler, checkpoints and exact resume, evaluation,
stage-wise training. Tiny models and data only (the helpers here are also used by test_ddp.py)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fa_lib.data.augment import Augmentation
from fa_lib.data.pipeline import FanInputs, TransformedDataset
from fa_lib.train import (EpochSampler, StopTraining, Trainer, atomic_torch_save, evaluate, fan_stack_modules,
                          fit, fit_stagewise, learning_rate_at, load_checkpoint, read_history,
                          split_train_val, stacked_loss, thesis_schedule)

TESTS = Path(__file__).resolve().parent
INPUT, HEATMAP = 32, 8


def random_samples(count: int, size: int = 48, seed: int = 0) -> list[dict]:
    """In-memory face-like samples: 68 points around the image centre, random pixels."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        pts = size / 2 + rng.uniform(-size / 4, size / 4, size=(68, 2))
        visible = rng.random(68) < 0.8
        samples.append({
            "image": rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8),
            "landmarks_2d": pts.astype(np.float32), "landmarks_3d": None, "visibility": visible,
            "box": np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32),
            "pose": np.full(3, np.nan, np.float32), "identity": -1, "source": "random",
        })
    return samples


def prepared(count: int = 10, augment: bool = True, seed: int = 0, guide: bool = False):
    aug = Augmentation(rotation=20.0, scale=(0.9, 1.1), box_noise=0.1) if augment else None
    transform = FanInputs("2d", input_size=INPUT, heatmap_size=HEATMAP, augment=aug, guide=guide)
    return TransformedDataset(random_samples(count, seed=seed), transform, seed=seed)


class TinyStackedNet(nn.Module):
    """A few convs: input (B,3,32,32) -> per-stack heatmaps (B,68,8,8). FAN-style child names so
    ``fan_stack_modules`` works (stem ``conv1``/``bn1``, stacks ``m{i}``/``l{i}``, links ``bl``/``al``)."""

    def __init__(self, stacks: int = 2, width: int = 8, points: int = 68, dropout: float = 0.0,
                 batch_norm: bool = True):
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout2d(dropout)
        for i in range(stacks):
            self.add_module(f"m{i}", nn.Conv2d(width, width, 3, padding=1))
            self.add_module(f"l{i}", nn.Conv2d(width, points, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, 1))
                self.add_module(f"al{i}", nn.Conv2d(points, width, 1))

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        outputs = []
        for i in range(self.stacks):
            features = self.drop(F.relu(getattr(self, f"m{i}")(x)))
            heatmaps = getattr(self, f"l{i}")(features)
            outputs.append(heatmaps)
            if i < self.stacks - 1:
                x = x + getattr(self, f"bl{i}")(features) + getattr(self, f"al{i}")(heatmaps)
        return outputs


def tiny_model(seed: int = 0, **kwargs) -> TinyStackedNet:
    torch.manual_seed(seed)
    return TinyStackedNet(**kwargs)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny convolutions on a shared 2-core machine are ~100x slower with 2 OpenMP threads than
    with 1 (thread contention); results are also only bit-reproducible at a fixed thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COMMON = dict(lr=1e-3, batch_size=3, device="cpu", progress=False, seed=3)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_times(history):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in history]


# ---- losses and schedules -------------------------------------------------------------------------

def test_stacked_loss_sums_every_stack():
    target = torch.rand(2, 3, 4, 4)
    outs = [torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)]
    expected = sum(((o - target) ** 2).mean() for o in outs)
    assert torch.allclose(stacked_loss(outs, target, "l2"), expected)
    assert torch.allclose(stacked_loss(outs[0], target, "l2"), ((outs[0] - target) ** 2).mean())
    assert torch.allclose(stacked_loss(outs, target, "l2", supervised_stacks=1), ((outs[0] - target) ** 2).mean())
    # eq. 5.3 (with its sign): -[p log s(x) + (1 - p) log(1 - s(x))], averaged
    p = torch.sigmoid(outs[0])
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert torch.allclose(stacked_loss(outs[:1], target, "sigmoid_bce"), bce, atol=1e-6)
    logits, labels = torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4))
    nll = -torch.log_softmax(logits, 1).gather(1, labels[:, None]).mean()
    assert torch.allclose(stacked_loss([logits, logits], labels, "log_softmax"), 2 * nll)
    with pytest.raises(ValueError, match="does not match"):
        stacked_loss(outs, torch.rand(2, 3, 8, 8), "l2")
    with pytest.raises(ValueError, match="unknown loss"):
        stacked_loss(outs, target, "l1")
    with pytest.raises(TypeError):
        stacked_loss({"a": 1}, target)


def test_learning_rate_schedule_and_thesis_settings():
    steps = [learning_rate_at(s, 1e-4, [15, 30], 0.1) for s in range(40)]
    assert steps[14] == 1e-4 and steps[15] == pytest.approx(1e-5) and steps[39] == pytest.approx(1e-6)
    fan = thesis_schedule("fan")
    assert fan["lr"] == 1e-4 and fan["batch_size"] == 10 and fan["epochs"] == 40 and fan["optimizer"] == "rmsprop"
    assert [round(m * 40) for m in fan["milestones"]] == [15, 30]
    assert thesis_schedule("2d_to_3d")["lr"] == 1e-3
    binary = thesis_schedule("binary")
    assert binary["loss"] == "sigmoid_bce" and binary["epochs"] == 55
    assert binary["lr"] * binary["gamma"] ** 4 == pytest.approx(5e-5)
    with pytest.raises(ValueError):
        thesis_schedule("resnet")


def test_split_train_val_is_deterministic_and_disjoint():
    data = list(range(50))
    train, val = split_train_val(data, 0.1, seed=1)
    assert len(val) == 5 and len(train) == 45
    assert sorted(train.indices + val.indices) == data
    again = split_train_val(data, 0.1, seed=1)
    assert again[1].indices == val.indices
    assert split_train_val(data, 0.1, seed=2)[1].indices != val.indices
    assert len(split_train_val(list(range(3)), 0.01)[1]) == 1
    with pytest.raises(ValueError):
        split_train_val(data, 1.0)


def test_epoch_sampler_shards_cover_the_epoch_and_resume_mid_epoch():
    shards = [EpochSampler(10, seed=4, num_replicas=3, rank=r) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    orders = [list(s) for s in shards]
    assert all(len(o) == 4 for o in orders)
    assert set(sum(orders, [])) == set(range(10))
    single = EpochSampler(10, seed=4)
    single.set_epoch(2)
    full = list(single)
    assert sorted(full) == list(range(10))
    single.set_epoch(2, start=6)
    assert list(single) == full[6:] and len(single) == 4
    single.set_epoch(3)
    assert list(single) != full


# ---- training -----------------------------------------------------------------------------------

def test_training_reduces_the_loss_and_writes_history(tmp_path):
    data = prepared(6, augment=False)
    model = tiny_model()
    history = fit(model, data, data, iterations=40, checkpoint_dir=tmp_path, loss="l2",
                  milestones=(0.5,), gamma=0.5, **{**COMMON, "lr": 3e-3})
    assert len(history) == 20  # 2 steps per epoch
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[0]["lr"] == pytest.approx(3e-3) and history[-1]["lr"] == pytest.approx(1.5e-3)
    assert {"val_loss", "val_nme", "epoch", "step"} <= history[-1].keys()
    assert math.isfinite(history[-1]["val_nme"])
    assert without_times(read_history(tmp_path)) == without_times(json.loads(json.dumps(history)))
    ckpt = load_checkpoint(tmp_path, tiny_model(seed=9))
    assert ckpt["step"] == 40
    # a finished run resumes as a no-op
    again = fit(tiny_model(seed=9), data, data, iterations=40, checkpoint_dir=tmp_path, loss="l2",
                milestones=(0.5,), gamma=0.5, **{**COMMON, "lr": 3e-3})
    assert without_times(again) == without_times(history)


@pytest.mark.parametrize("kill_at", [2, 4, 5])
def test_resume_after_interruption_gives_identical_weights(tmp_path, kill_at):
    """Train N steps; separately train k steps, stop, resume in a new trainer with a different
    initial model, to N: the weights, optimiser state and history are bit-identical (CPU)."""
    data, val = prepared(10), prepared(4, augment=False, seed=1)
    kwargs = dict(iterations=7, milestones=(0.5,), checkpoint_every=1, loss="l2", **COMMON)
    reference = tiny_model(dropout=0.2)
    ref_history = fit(reference, data, val, checkpoint_dir=tmp_path / "ref", **kwargs)

    def stop(trainer):
        if trainer.step == kill_at:
            raise StopTraining

    first = tiny_model(dropout=0.2)
    fit(first, data, val, checkpoint_dir=tmp_path / "run", callbacks=[stop], **kwargs)
    assert not states_equal(first.state_dict(), reference.state_dict())
    resumed = tiny_model(seed=123, dropout=0.2)
    history = fit(resumed, data, val, checkpoint_dir=tmp_path / "run", **kwargs)
    assert states_equal(resumed.state_dict(), reference.state_dict())
    assert without_times(history) == without_times(ref_history)
    ref_opt = load_checkpoint(tmp_path / "ref")["optimizer"]["state"]
    opt = load_checkpoint(tmp_path / "run")["optimizer"]["state"]
    assert all(torch.equal(ref_opt[k]["square_avg"], opt[k]["square_avg"]) for k in ref_opt)


def test_resume_after_sigkill(tmp_path):
    """A real kill: a training process SIGKILLs itself right after the checkpoint of step 3;
    resuming from what it left on disk ends with the weights of an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)  # float reductions depend on the thread count
        sys.path.insert(0, {str(TESTS)!r})
        from test_train import prepared, tiny_model, COMMON
        from fa_lib.train import fit
        def die(trainer):
            if trainer.step == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        fit(tiny_model(dropout=0.2), prepared(10), None, iterations=6, checkpoint_every=1,
            checkpoint_dir=sys.argv[1], callbacks=[die], **COMMON)
    """))
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "ckpt")],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["last.pt"]  # no temp files left
    assert load_checkpoint(tmp_path / "ckpt")["step"] == 3
    resumed = tiny_model(seed=5, dropout=0.2)
    fit(resumed, prepared(10), None, iterations=6, checkpoint_every=1, checkpoint_dir=tmp_path / "ckpt",
        **COMMON)
    reference = tiny_model(dropout=0.2)
    fit(reference, prepared(10), None, iterations=6, **COMMON)  # 1 thread, as the killed process
    assert states_equal(resumed.state_dict(), reference.state_dict())


def test_loader_workers_and_progress_bar_do_not_change_the_result(capsys):
    data = prepared(6)
    a, b = tiny_model(dropout=0.2), tiny_model(dropout=0.2)
    fit(a, data, None, iterations=3, **COMMON)
    fit(b, data, None, iterations=3, **{**COMMON, "progress": True}, num_workers=2)
    assert states_equal(a.state_dict(), b.state_dict())
    assert "train" in capsys.readouterr().err


def test_resume_refuses_changed_settings(tmp_path):
    data = prepared(6, augment=False)
    fit(tiny_model(), data, None, iterations=2, checkpoint_dir=tmp_path, **COMMON)
    with pytest.raises(ValueError, match="batch_size"):
        fit(tiny_model(), data, None, iterations=2, checkpoint_dir=tmp_path, **{**COMMON, "batch_size": 2})
    # resume=False starts afresh
    fit(tiny_model(), data, None, iterations=2, checkpoint_dir=tmp_path, resume=False,
        **{**COMMON, "batch_size": 2})


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)

    def broken_save(obj, fh):
        fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        atomic_torch_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_amp_is_ignored_on_cpu_with_a_warning():
    data = prepared(3, augment=False)
    model = tiny_model()
    with pytest.warns(UserWarning, match="amp"):
        fit(model, data, None, iterations=1, amp=True, **COMMON)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_sigmoid_bce_and_face_parsing_losses_train():
    data = prepared(4, augment=False)
    history = fit(tiny_model(), data, data, iterations=4, loss="sigmoid_bce", **COMMON)
    assert "val_nme" in history[-1] and history[-1]["train_loss"] < history[0]["train_loss"]

    class Parsing(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"image": torch.rand(3, INPUT, INPUT, generator=g),
                    "mask": torch.randint(0, 7, (HEATMAP, HEATMAP), generator=g)}

    parsing = fit(tiny_model(points=7), Parsing(), Parsing(), iterations=2, loss="log_softmax",
                  metrics_fn=lambda model, ds: {"n_val": len(ds)}, **COMMON)
    assert "val_nme" not in parsing[-1] and parsing[-1]["n_val"] == 4 and "val_loss" in parsing[-1]


def test_bad_arguments_are_reported():
    data = prepared(3, augment=False)
    with pytest.raises(ValueError, match="budget"):
        Trainer(tiny_model(), data)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(tiny_model(), data, epochs=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="milestones"):
        Trainer(tiny_model(), data, epochs=1, milestones=(15, 30))
    with pytest.raises(ValueError, match="empty"):
        Trainer(tiny_model(), [], epochs=1)
    with pytest.raises(ValueError, match="does not match"):
        fit(tiny_model(points=5), data, None, iterations=1, **COMMON)


# ---- evaluation -----------------------------------------------------------------------------------

class GuideOracle(nn.Module):
    """Returns the guide channels of its input: with input size == heatmap size and guide sigma ==
    target sigma these are exactly the target heatmaps, so predictions must equal the truth."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return [x[:, 3:] + 0 * self.unused]


def test_evaluate_returns_image_pixel_predictions_and_nme():
    aug = Augmentation(rotation=40.0, scale=(0.8, 1.2), **{"colour": 0.0, "occlusion": 0.0})
    transform = FanInputs("2d", input_size=16, heatmap_size=16, augment=aug, guide=True)
    data = TransformedDataset(random_samples(6), transform, seed=2)
    result = evaluate(GuideOracle(), data, batch_size=4, device="cpu")
    gt = np.stack([s["landmarks_2d"] for s in random_samples(6)])
    assert result.predictions.shape == (6, 68, 2) and result.nme.shape == (6,)
    np.testing.assert_allclose(result.ground_truth, gt)
    assert list(result.indices) == list(range(6))
    assert any(data[i]["flipped"] for i in range(6))
    np.testing.assert_array_equal(result.visibility, np.stack([s["visibility"] for s in random_samples(6)]))
    # decoding error is at most ~0.36 heatmap px; one heatmap px is (200*scale/16) image px
    per_px = np.array([200 * float(data[i]["scale"]) / 16 for i in range(6)])
    err = np.linalg.norm(result.predictions - gt, axis=-1).max(axis=1)
    assert np.all(err <= 0.36 * per_px + 1e-3)
    assert result.mean_nme < 0.1
    # a model that is wrong everywhere has a large NME
    shifted = evaluate(nn.Sequential(GuideOracle()), data, batch_size=4, device="cpu")
    assert shifted.mean_nme == pytest.approx(result.mean_nme)

    class Shift(GuideOracle):
        def forward(self, x):
            return [torch.roll(x[:, 3:], shifts=3, dims=-1)]

    assert evaluate(Shift(), data, batch_size=4).mean_nme > result.mean_nme + 0.02


# ---- stage-wise training (section 5.7.2) --------------------------------------------------------

def test_fan_stack_modules_partition_the_model():
    model = tiny_model(stacks=3)
    groups = [fan_stack_modules(model, s) for s in range(3)]
    ids = [id(p) for g in groups for m in g for p in m.parameters()]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {n for n, m in model.named_children() if any(m is g for g in groups[1])} == {"m1", "l1", "bl0", "al0"}
    with pytest.raises(ValueError):
        fan_stack_modules(model, 3)
    with pytest.raises(ValueError, match="FAN-style"):
        fan_stack_modules(nn.Linear(2, 2), 0)


def test_frozen_stack_keeps_weights_and_batchnorm_statistics():
    model = tiny_model(stacks=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = prepared(6)
    history = fit(model, data, data, iterations=3, trainable_modules=fan_stack_modules(model, 1),
                  supervised_stacks=2, **COMMON)
    after = model.state_dict()
    frozen = [k for k in before if k.split(".")[0] in ("conv1", "bn1", "m0", "l0")]
    trained = [k for k in before if k.split(".")[0] in ("m1", "l1", "bl0", "al0")]
    assert "bn1.running_mean" in frozen
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert all(p.requires_grad for p in model.parameters())  # restored after the phase
    assert "val_nme" in history[-1]


def test_fit_stagewise_runs_every_phase(tmp_path):
    model = tiny_model(stacks=2)
    data = prepared(6)
    history = fit_stagewise(model, data, None, num_stacks=2, stage_budget={"iterations": 2},
                            joint_budget={"iterations": 2}, checkpoint_dir=tmp_path, **COMMON)
    assert [r["phase"] for r in history] == ["stage1", "stage2", "joint"]
    assert {p.name for p in tmp_path.iterdir()} == {"stage1", "stage2", "joint"}
    with pytest.raises(ValueError, match="stage_budget"):
        fit_stagewise(model, data, num_stacks=2, stage_budget={"steps": 2}, joint_budget={"epochs": 1})


def test_real_fan_trains_stage_wise_when_available(tmp_path):
    fan = pytest.importorskip("fa_lib.models.fan")
    torch.manual_seed(0)
    # a miniature 2-stack 2D-to-3D-FAN: RGB + 68 guide channels in, 68 heatmaps per stack out
    model = fan.FAN(2, width=16, hg_depth=1, in_channels=3 + 68, stem_channels=(8, 16))
    groups = [fan_stack_modules(model, s) for s in range(2)]
    ids = [id(p) for g in groups for m in g for p in m.parameters()]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    data = prepared(4, guide=True)
    history = fit_stagewise(model, data, data, num_stacks=2, stage_budget={"iterations": 1},
                            joint_budget={"iterations": 1}, checkpoint_dir=tmp_path, **COMMON)
    assert [r["phase"] for r in history] == ["stage1", "stage2", "joint"]
    assert all(math.isfinite(r["val_nme"]) for r in history)


def test_cpu_bf16_and_channels_last_train_the_same_network_nearly_alike():
    """bfloat16 autocast and channels-last memory are speed options: from the same start, a few steps
    give nearly the same weights as float32 (channels-last only rounds differently)."""
    import torch.nn as nn

    from fa_lib.train import Trainer, cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 units: the trainer falls back to float32")
    torch.manual_seed(0)
    images = torch.rand(16, 3, 16, 16)
    items = [{"image": images[i], "heatmaps": torch.rand(2, 16, 16)} for i in range(16)]

    def trained(**options):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))
        start = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        history = Trainer(net, items, None, lr=1e-3, batch_size=4, iterations=4, device="cpu", progress=False,
                          seed=0, **options).fit()
        return start, torch.cat([p.detach().flatten() for p in net.parameters()]), history[-1]["train_loss"]

    start, base, base_loss = trained()
    _, fast, fast_loss = trained(channels_last=True)
    _, half, half_loss = trained(cpu_bf16=True, channels_last=True)
    assert torch.allclose(base, fast, atol=1e-6) and fast_loss == pytest.approx(base_loss, rel=1e-5)
    # bfloat16 rounds the forward pass: the same training, up to a small fraction of the update
    assert not torch.equal(base, half)
    assert float((half - base).norm() / (base - start).norm()) < 0.25
    assert half_loss == pytest.approx(base_loss, rel=0.02)


def test_cpu_bf16_falls_back_to_float32_without_bf16_units(monkeypatch):
    import torch.nn as nn

    from fa_lib import train

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    items = [{"image": torch.rand(3, 8, 8), "heatmaps": torch.rand(2, 8, 8)} for _ in range(4)]
    net = nn.Conv2d(3, 2, 3, padding=1)
    t = train.Trainer(net, items, None, batch_size=2, iterations=1, device="cpu", progress=False, cpu_bf16=True)
    with pytest.warns(UserWarning, match="no bfloat16 units"):
        t.fit()
    assert t.cpu_bf16 is False


def test_validation_decoder_is_checked_and_used():
    from fa_lib.train import Trainer

    with pytest.raises(ValueError, match="val_decoder"):
        Trainer(torch.nn.Identity(), [0], None, iterations=1, val_decoder="nearest")
    data = prepared(4)
    nme = {}
    for decoder in ("quarter", "subpixel"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.AvgPool2d(4), torch.nn.Conv2d(3, 68, 1))
        history = Trainer(net, data, data, iterations=1, batch_size=4, device="cpu", progress=False,
                          val_decoder=decoder).fit()
        nme[decoder] = history[-1]["val_nme"]
    assert all(math.isfinite(v) for v in nme.values()) and nme["quarter"] != nme["subpixel"]
