"""Data-parallel training under torchrun: 2 CPU processes on the gloo backend, a tiny model.

With mean-reduced losses and no batch norm, two ranks with batch b see, at every step, the same
items as one process with batch 2b (EpochSampler deals rank r every second index of the same
shuffled order), and DDP averages their gradients: the weights must agree with a single-process
run up to float summation order. The run is interrupted and resumed in the middle, so DDP resume
(per-rank RNG states, sampler position) is exercised too.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from fa_lib.train import fit

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from test_train import one_torch_thread, prepared, tiny_model  # noqa: E402,F401 (fixture)
from torchrun_helpers import needs_torchrun, run_two_processes  # noqa: E402

SETTINGS = dict(iterations=4, lr=1e-3, device="cpu", progress=False, seed=3, milestones=(0.5,), loss="l2")

SCRIPT = """
from test_train import prepared, tiny_model
from fa_lib.train import fit

settings = json.loads(sys.argv[2])
out = sys.argv[1]
data, val = prepared(12), prepared(4, augment=False, seed=1)
ckpt = os.path.join(out, "ckpt")
fit(tiny_model(batch_norm=False), data, val, batch_size=2, checkpoint_dir=ckpt, checkpoint_every=1,
    callbacks=[stop_at_2], **settings)
model = tiny_model(seed=7, batch_norm=False)  # a different start: the checkpoint must win
history = fit(model, data, val, batch_size=2, checkpoint_dir=ckpt, checkpoint_every=1, **settings)
torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
with open(os.path.join(out, f"history{rank}.json"), "w") as fh:
    json.dump(history, fh)
dist.destroy_process_group()
"""


@needs_torchrun
def test_two_process_gloo_training_matches_single_process(tmp_path):
    run_two_processes(SCRIPT, tmp_path, str(tmp_path), json.dumps(SETTINGS))

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP keeps the replicas identical

    single = tiny_model(batch_norm=False)
    history = fit(single, prepared(12), prepared(4, augment=False, seed=1), batch_size=4, **SETTINGS)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-6, msg=key)

    # only rank 0 validates and writes; its history is the single-process one
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["history.jsonl", "last.pt"]
    ddp_history = json.loads((tmp_path / "history0.json").read_text())
    assert [r["step"] for r in ddp_history] == [r["step"] for r in history] == [3, 4]
    for ours, ref in zip(ddp_history, history):
        # tight: a resumed rank that restored another rank's partial loss sum is off by ~2e-4
        assert ours["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)
        assert ours["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)
    assert "val_loss" not in json.loads((tmp_path / "history1.json").read_text())[0]
