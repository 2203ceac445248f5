"""The experiment layer every chapter shares: the verdict rule, the registry, the run cache, the CLI."""
import json
import math

import pytest
import torch

from fa_lib.cli import main
from fa_lib.experiments import registry
from fa_lib.experiments.runs import RunCache, run_key, seeded
from fa_lib.experiments.verdict import judge, not_measurable, pooled_std


# -- the one statistical rule -------------------------------------------------------------------------

def test_a_gap_beyond_two_standard_errors_holds_or_is_reversed():
    v = judge("A beats B", "A", [50.0, 52.0, 51.0], "B", [40.0, 41.0, 39.0], paper_gap=5.0)
    assert v.holds is True and v.outcome == "holds"
    assert v.gap == pytest.approx(11.0)
    assert v.standard_error == pytest.approx(math.sqrt(1 / 3 + 1 / 3))
    r = judge("A beats B", "A", [40.0, 41.0, 39.0], "B", [50.0, 52.0, 51.0], paper_gap=5.0)
    assert r.holds is False and r.outcome == "reversed"


def test_a_gap_within_two_standard_errors_is_not_a_finding():
    v = judge("A beats B", "A", [50.0, 40.0], "B", [45.0, 44.0], paper_gap=5.0)
    assert v.holds is None and v.outcome == "within noise"


def test_single_seeds_conclude_nothing_unless_a_pooled_spread_is_known():
    v = judge("A beats B", "A", [50.0], "B", [40.0], paper_gap=5.0)
    assert v.holds is None and v.outcome == "single seed" and v.direction_agrees is True
    assert "single seed" in v.sentence()
    w = judge("A beats B", "A", [50.0], "B", [40.0], paper_gap=5.0, noise=1.0)
    assert w.holds is True  # 10 > 2 * sqrt(2)
    x = judge("A beats B", "A", [50.0], "B", [48.0], paper_gap=5.0, noise=1.0)
    assert x.holds is None and x.outcome == "within noise"


def test_a_negative_thesis_gap_expects_the_opposite_sign():
    v = judge("B beats A", "A", [40.0, 41.0], "B", [50.0, 51.0], paper_gap=-3.0)
    assert v.holds is True


def test_not_measurable_and_pooled_spread():
    v = not_measurable("AUC orders the sizes", "every AUC is 0")
    assert v.holds is None and v.outcome == "not measurable"
    assert pooled_std([[1.0, 3.0], [5.0]]) == pytest.approx(math.sqrt(2.0))
    assert pooled_std([[1.0], [2.0]]) is None
    assert json.loads(json.dumps(v.to_dict()))["outcome"] == "not measurable"


# -- the registry -------------------------------------------------------------------------------------

def test_every_registered_builder_names_its_thesis_item_and_is_found_by_id():
    found = registry.builders()
    assert {b.chapter for b in found} >= {4, 5}
    for b in found:
        assert b.kind in registry.KINDS
        assert registry.find(b.thesis_id, b.kind) is b
        assert b.title and b.source().split(":")[0].endswith(".py")
    assert registry.find("table 4.3").thesis_id == "4.3"
    assert registry.find("fig 5.7").kind == "figure"


def test_unknown_id_lists_what_the_chapter_has():
    with pytest.raises(KeyError, match="chapter 4 has"):
        registry.find("4.99")
    with pytest.raises(KeyError, match="no chapter with that number"):
        registry.find("9.1")


def test_where_command(capsys):
    assert main(["where", "4.3"]) == 0
    out = capsys.readouterr().out
    assert "table 4.3" in out and "fa_lib.experiments.ch4" in out and "trains" in out
    assert main(["where", "5.2"]) == 0  # Table 5.2 and Fig. 5.2 share the id: both are shown
    out = capsys.readouterr().out
    assert "table 5.2" in out and "figure 5.2" in out
    assert main(["where", "4.99"]) == 2
    assert main(["where", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(registry.builders())


# -- the run cache ------------------------------------------------------------------------------------

def _net():
    return torch.nn.Linear(3, 2)


def test_run_cache_trains_once_and_reloads_the_same_weights(tmp_path):
    cache = RunCache(tmp_path, profile="smoke")
    calls = []

    def train(folder):
        calls.append(folder)
        with torch.no_grad():
            model.weight.add_(1.0)
        return {"iterations": 1}, [{"step": 1, "train_loss": 0.5}]

    with seeded(3):
        model = _net()
    first = cache.get_or_train("Tiny net", {"width": 3, "seed": 3}, model, train)
    assert not first.cached and len(calls) == 1 and first.folder.name == f"tiny-net-{run_key({'width': 3, 'seed': 3})}"
    with seeded(3):
        again = _net()
    second = cache.get_or_train("Tiny net", {"width": 3, "seed": 3}, again, train)
    assert second.cached and len(calls) == 1
    assert torch.equal(again.weight, model.weight)
    assert second.history == [{"step": 1, "train_loss": 0.5}]
    # another record is another run
    cache.get_or_train("Tiny net", {"width": 3, "seed": 4}, _net(), train)
    assert len(calls) == 2


def test_seeded_initialisation_does_not_depend_on_what_ran_before():
    with seeded(7):
        a = _net()
    torch.rand(100)
    with seeded(7):
        b = _net()
    assert torch.equal(a.weight, b.weight)


def test_an_interrupted_run_is_not_taken_for_a_finished_one(tmp_path):
    cache = RunCache(tmp_path, profile="smoke")

    def crash(folder):
        (folder / "last.pt.partial").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_train("Tiny net", {"a": 1}, _net(), crash)
    assert not cache.is_finished("Tiny net", {"a": 1})
    assert [e["finished"] for e in cache.entries()] == [False]


def test_runs_command_lists_and_clears(tmp_path, capsys):
    cache = RunCache(tmp_path, profile="smoke")
    cache.get_or_train("Tiny net", {"a": 1}, _net(), lambda folder: ({"iterations": 1}, []))
    cache.get_or_train("Other net", {"a": 1}, _net(), lambda folder: ({"iterations": 1}, []))
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Tiny net" in out and "2 run(s)" in out
    assert main(["runs", "clear", "--root", str(tmp_path), "--name", "tiny*"]) == 1  # needs --yes
    assert len(cache.entries()) == 2
    assert main(["runs", "clear", "--root", str(tmp_path), "--name", "tiny*", "--yes"]) == 0
    assert [e["name"] for e in cache.entries()] == ["Other net"]


def test_memory_only_cache_writes_nothing(tmp_path):
    cache = RunCache(False)
    run = cache.get_or_train("Tiny net", {"a": 1}, _net(), lambda folder: ({"iterations": 1}, []))
    assert run.folder is None and cache.entries() == []


def test_learning_curves_accumulate_training_time_and_find_where_a_curve_flattens():
    from fa_lib.experiments.common import curve_summary, learning_curves
    from fa_lib.experiments.plotting import learning_curves_figure

    histories = {
        "flat": [{"step": s, "epoch_time_s": 2.0, "val_nme": v} for s, v in
                 ((10, 0.20), (20, 0.101), (30, 0.100), (40, 0.100))],
        "falling": [{"step": s, "epoch_time_s": 1.0, "val_nme": v} for s, v in ((10, 0.3), (20, 0.2), (30, 0.1))],
        "no validation": [{"step": 10, "epoch_time_s": 1.0}],
    }
    curves = learning_curves(histories)
    assert set(curves["network"]) == {"flat", "falling"}
    assert curves[curves.network == "flat"]["train_s"].tolist() == [2.0, 4.0, 6.0, 8.0]
    assert curves["value"].max() == pytest.approx(30.0)
    summary = curve_summary(curves).set_index("network")
    assert summary.loc["flat", "within 5% of final from step"] == 20
    assert not summary.loc["flat", "still falling at the end"]
    assert summary.loc["falling", "still falling at the end"]
    fig = learning_curves_figure(curves)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
