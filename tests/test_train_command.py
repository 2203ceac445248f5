"""``fa-lib train``: a chapter's networks trained into the run cache from the command line, alone and as
two gloo processes under torchrun, including a run killed after a checkpoint and resumed to the same
weights as an uninterrupted one."""
from __future__ import annotations

import os
import subprocess

import pytest
import torch

from fa_lib.cli import main
from fa_lib.experiments.train_command import make_context
from fa_lib.train import EXIT_AFTER_STEP_ENV, EXIT_AFTER_STEP_STATUS
from torchrun_helpers import TORCHRUN, needs_torchrun

KNOBS = ["fan_iterations=12", "sr_iterations=12"]


def test_train_one_network_then_the_notebook_finds_it(tmp_path, capsys):
    assert main(["train", "ch6", "fan:hr", "--profile", "smoke", "--runs-root", str(tmp_path), "--set",
                 *KNOBS]) == 0
    assert "1 network(s) of ch6" in capsys.readouterr().out
    ctx = make_context("ch6", "smoke", knobs={"fan_iterations": 12, "sr_iterations": 12}, runs_root=tmp_path,
                       log=None, device="cpu")
    assert ctx.runs.is_finished("fan-hr", ctx.fan_record("hr"))
    assert not ctx.runs.is_finished("fan-bilinear", ctx.fan_record("bilinear"))


def test_train_refuses_unknown_chapters_jobs_and_knobs(tmp_path, capsys):
    assert main(["train", "ch6", "method:nope", "--profile", "smoke", "--runs-root", str(tmp_path)]) == 2
    assert "unknown ch6 job" in capsys.readouterr().err
    assert main(["train", "ch6", "--profile", "smoke", "--runs-root", str(tmp_path), "--set", "width=3"]) == 2
    assert "unknown ch6 knob" in capsys.readouterr().err
    assert main(["train", "ch3", "--list", "--profile", "smoke", "--runs-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["seed:0"]


def _torchrun(runs_root, *jobs, env_extra=None, chapter="ch6", knobs=KNOBS) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "fa_lib.cli", "train", chapter,
                           *jobs, "--profile", "smoke", "--device", "cpu", "--runs-root", str(runs_root), "--set",
                           *knobs], env=env, capture_output=True, text=True, timeout=300)


@needs_torchrun
def test_chapter_4_trains_under_torchrun_into_the_notebooks_cache(tmp_path):
    done = _torchrun(tmp_path, "3D-FAN", chapter="ch4", knobs=["iterations=4"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ctx = make_context("ch4", "smoke", knobs={"iterations": 4}, runs_root=tmp_path, log=None, device="cpu")
    assert ctx.network("3D-FAN").cached and ctx.network("3D-FAN").budget["iterations"] == 4


@needs_torchrun
def test_two_processes_train_and_resume_after_a_kill(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _torchrun(whole, "fan:hr")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # killed right after step 6 (the end of the second epoch and its checkpoint), then run again
    crashed = _torchrun(killed, "fan:hr", env_extra={EXIT_AFTER_STEP_ENV: "6"})
    assert crashed.returncode != 0
    ctx = make_context("ch6", "smoke", knobs={"fan_iterations": 12, "sr_iterations": 12}, runs_root=killed,
                       log=None, device="cpu")
    folder = ctx.runs.folder("fan-hr", ctx.fan_record("hr"))
    assert (folder / "train" / "last.pt").is_file() and not ctx.runs.is_finished("fan-hr", ctx.fan_record("hr"))
    assert torch.load(folder / "train" / "last.pt", weights_only=True)["step"] == 6
    resumed = _torchrun(killed, "fan:hr")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    a = torch.load(ctx.runs.folder("fan-hr", ctx.fan_record("hr")) / "model.pt", weights_only=True)
    ctx_whole = make_context("ch6", "smoke", knobs={"fan_iterations": 12, "sr_iterations": 12}, runs_root=whole,
                             log=None, device="cpu")
    b = torch.load(ctx_whole.runs.folder("fan-hr", ctx_whole.fan_record("hr")) / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert EXIT_AFTER_STEP_STATUS == 75


def test_chapters_4_and_5_list_and_train_their_networks_into_the_notebooks_cache(tmp_path, capsys):
    """``fa-lib train ch4|ch5``: the jobs are the notebook's networks, and a trained one is found by the
    chapter's context under the notebook's key (it would only evaluate)."""
    assert main(["train", "ch4", "--list", "--profile", "smoke", "--runs-root", str(tmp_path)]) == 0
    jobs4 = capsys.readouterr().out.splitlines()
    assert jobs4[:4] == ["2D-FAN", "3D-FAN", "2D-to-3D-FAN", "3D-FAN-full depth"]
    assert any(j.startswith("size:") for j in jobs4)
    assert main(["train", "ch4", "2D-FAN", "--profile", "smoke", "--device", "cpu", "--runs-root", str(tmp_path),
                 "--set", "iterations=2"]) == 0
    ctx = make_context("ch4", "smoke", knobs={"iterations": 2}, runs_root=tmp_path, log=None, device="cpu")
    assert ctx.network("2D-FAN").cached
    assert "1 network(s) of ch4" in capsys.readouterr().out
    assert main(["train", "ch5", "--list", "--profile", "smoke", "--runs-root", str(tmp_path)]) == 0
    jobs5 = capsys.readouterr().out.splitlines()
    assert len(jobs5) == len(set(jobs5)) > 10 and all(" " not in j for j in jobs5)
    ctx5 = make_context("ch5", "smoke", runs_root=tmp_path, log=None, device="cpu")
    with pytest.raises(ValueError, match="unknown chapter-5 job"):
        ctx5.run_job("no-such-network")
