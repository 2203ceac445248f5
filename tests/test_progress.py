"""Progress of a running notebook (fa_lib.progress): the section papermill is running, and the networks a
Trainer reports through $FA_LIB_PROGRESS, as `fa-lib reproduce` shows them."""
import json

import nbformat as nbf
import torch

from fa_lib.progress import (PROGRESS_ENV, NotebookProgress, TrainingReporter, current_section, describe_training,
                             read_training)


def test_current_section_is_the_heading_above_the_running_cell(tmp_path):
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("# Chapter\n\n## Data"), nbf.v4.new_code_cell("x = 1"),
                nbf.v4.new_markdown_cell("## Table 5.2: the blocks"), nbf.v4.new_code_cell("y = 2")]
    nb.cells[1].metadata["papermill"] = {"status": "completed"}
    nb.cells[3].metadata["papermill"] = {"status": "running"}
    path = tmp_path / "running.ipynb"
    nbf.write(nb, path)
    assert current_section(path) == "Table 5.2: the blocks"
    nb.cells[3].metadata["papermill"] = {"status": "completed"}
    nbf.write(nb, path)
    assert current_section(path) is None and current_section(tmp_path / "missing.ipynb") is None


def test_trainer_reports_its_network_step_loss_and_time_left(tmp_path, monkeypatch):
    from fa_lib.train import Trainer

    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(progress))

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"image": torch.full((2,), float(i)), "target": torch.zeros(1)}

    model = torch.nn.Linear(2, 1)
    Trainer(model, Items(), loss=lambda out, batch: ((out - batch["target"]) ** 2).mean(), iterations=5,
            batch_size=2, progress=False, name="tiny net", device="cpu").fit()
    latest = read_training(progress)
    assert latest["tiny net"]["step"] == 5 and latest["tiny net"]["total"] == 5 and latest["tiny net"]["done"]
    assert describe_training(latest) == ""  # finished networks are not shown
    records = {"a": {"name": "a", "step": 50, "total": 200, "loss": 0.5, "elapsed_s": 10.0, "done": False}}
    assert describe_training(records) == "a 50/200, loss 0.5, ~30s left"


def test_reporter_is_throttled_and_silent_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    TrainingReporter("x", 10).update(1, 0.1)  # no file, no error
    path = tmp_path / "p.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    reporter = TrainingReporter("x", 10, every_s=60)
    for step in range(1, 6):
        reporter.update(step, 0.1)
    reporter.update(10, 0.05, done=True)
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 10] and lines[-1]["done"]


def test_notebook_progress_shows_section_and_training(tmp_path):
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("## Training every network"), nbf.v4.new_code_cell("train()")]
    nb.cells[1].metadata["papermill"] = {"status": "running"}
    running, progress = tmp_path / "r.ipynb", tmp_path / "p.jsonl"
    nbf.write(nb, running)
    with NotebookProgress(running, progress, enabled=False) as watcher:
        progress.write_text(json.dumps({"name": "binary Ours", "step": 10, "total": 20, "loss": 0.25,
                                        "elapsed_s": 5.0, "done": False}) + "\n")
        assert watcher.status() == "Training every network — binary Ours 10/20, loss 0.25, ~5s left"
    assert not progress.exists()
