"""Running a test script as two CPU processes under torchrun (gloo): shared by the data-parallel tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")

needs_torchrun = pytest.mark.skipif(not torch.distributed.is_available() or not Path(TORCHRUN).exists(),
                                    reason="torch.distributed / torchrun not available")

#: the start of every script: one thread, the tests folder importable, a gloo group owned by the script
#: (so several fits share it), ``rank``, and a callback that interrupts a run at step 2
PREAMBLE = """
import json, os, sys
import torch
import torch.distributed as dist
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from fa_lib.train import StopTraining

rank = int(os.environ["RANK"])
dist.init_process_group("gloo")

def stop_at_2(trainer):
    if trainer.step == 2:
        raise StopTraining
"""


def run_two_processes(body: str, tmp_path: Path, *args: str) -> None:
    """Write ``PREAMBLE`` + ``body`` to a script and run it as two processes; fail with its output if it fails."""
    script = tmp_path / "torchrun_script.py"
    script.write_text(textwrap.dedent(PREAMBLE.format(tests=str(TESTS))) + textwrap.dedent(body))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", str(script), *args], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
