import dataclasses

import pytest

from fa_lib.cli import main
from fa_lib.profiles import (PROFILE_NAMES, SECTIONS, Ch4Scale, Ch5Scale, TrainConfig, get_profile,
                             parse_knobs, with_knobs)


def test_every_profile_is_defined_and_ordered_by_scale():
    smoke, quick, full = (get_profile(n) for n in PROFILE_NAMES)
    assert smoke.data.train_size < quick.data.train_size < full.data.train_size
    assert smoke.ch4.input_size <= quick.ch4.input_size <= full.ch4.input_size
    assert smoke.ch5.input_size <= quick.ch5.input_size <= full.ch5.input_size


def test_full_profile_is_the_thesis():
    full = get_profile("full")
    # chapter 4 (4.3.1-4.3.2): 4 stacks of width 256 on 256 px crops, 64 px heatmaps; RMSprop lr 1e-4,
    # minibatch 10, 40 epochs
    c4 = full.ch4
    assert (c4.stacks, c4.width, c4.input_size, c4.heatmap_size) == (4, 256, 256, 64)
    assert (c4.batch_size, c4.epochs, c4.lr, c4.iterations) == (10, 40, 1e-4, None)
    assert c4.depth_layers == (3, 8, 36, 3)  # ResNet-152 depth network (4.8)
    # chapter 5 (5.5.1): 55 epochs, lr 2.5e-4 dropped four times to 5e-5
    c5 = full.ch5
    assert (c5.input_size, c5.width, c5.epochs, c5.lr) == (256, 256, 55, 2.5e-4)
    assert c5.lr * c5.lr_gamma ** len(c5.lr_milestones) == pytest.approx(5e-5)
    # the defaults of each section are the thesis's values
    assert c4 == Ch4Scale()


def test_heatmap_is_a_quarter_of_the_input_in_chapter_4():
    for name in PROFILE_NAMES:
        c4 = get_profile(name).ch4
        assert c4.input_size == 4 * c4.heatmap_size


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match="smoke, quick, full"):
        get_profile("fast")


def test_unknown_knob_or_section_is_an_error_not_a_silent_default():
    with pytest.raises(ValueError, match="iteratons"):
        with_knobs("smoke", "ch5", iteratons=3)
    with pytest.raises(ValueError, match="unknown profile section"):
        with_knobs("smoke", "ch9", iterations=3)
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("smoke", extra=())
    with pytest.raises(TypeError, match="Ch5Scale.iterations"):
        with_knobs("smoke", "ch5", iterations="3")
    with pytest.raises(ValueError, match="multiple of 4"):
        with_knobs("smoke", "ch5", input_size=30)


def test_with_knobs_changes_only_what_is_asked():
    base = get_profile("smoke")
    p = with_knobs(base, "ch5", iterations=1, width=16, seeds=[0, 1])
    assert (p.ch5.iterations, p.ch5.width, p.ch5.seeds) == (1, 16, (0, 1))  # lists become tuples
    assert p.ch4 == base.ch4 and p.data == base.data
    assert get_profile("smoke", description="x").description == "x"


def test_parse_knobs_reads_python_literals():
    assert parse_knobs(["ch5.iterations=3", "ch4.size_rows=('6M', '2M')", "ch5.threads=None"]) == {
        "ch5": {"iterations": 3, "threads": None}, "ch4": {"size_rows": ("6M", "2M")}}
    with pytest.raises(ValueError, match="section.name=value"):
        parse_knobs(["iterations=3"])


def test_train_config_drives_the_trainer():
    cfg = TrainConfig(lr=1e-3, iterations=100, lr_milestones=(0.8,))
    kw = cfg.trainer_kwargs()
    assert kw["iterations"] == 100 and kw["epochs"] is None and kw["milestones"] == (0.8,)
    with pytest.raises(ValueError, match="fractions"):
        TrainConfig(lr_milestones=(15,))
    with pytest.raises(ValueError, match="val_decoder"):
        TrainConfig(iterations=1, val_decoder="nearest")


def test_train_config_key_record_leaves_out_what_does_not_change_weights():
    plain = TrainConfig(lr=1e-3, iterations=100)
    # keys made before the speed switches existed stay valid while the switches are off
    assert set(plain.key_record()) == {"optimizer", "lr", "batch_size", "iterations", "epochs",
                                       "lr_milestones", "lr_gamma"}
    assert plain.key_record() == TrainConfig(lr=1e-3, iterations=100, val_decoder="subpixel").key_record()
    fast = TrainConfig(lr=1e-3, iterations=100, cpu_bf16=True, channels_last=True)
    assert fast.key_record()["cpu_bf16"] is True and fast.key_record() != plain.key_record()
    assert fast.trainer_kwargs()["cpu_bf16"] and fast.trainer_kwargs()["channels_last"]


def test_profiles_command_prints_every_knob(capsys):
    assert main(["profiles", "quick"]) == 0
    out = capsys.readouterr().out
    for section in SECTIONS:
        assert f"[{section}]" in out
        for f in dataclasses.fields(get_profile("quick").section(section)):
            assert f.name in out
    assert main(["profiles", "smoke", "--section", "ch5", "--json"]) == 0
