import pytest

from fa_lib.profiles import PROFILE_NAMES, get_profile, with_extra


def test_every_profile_is_defined_and_ordered_by_scale():
    smoke, quick, full = (get_profile(n) for n in PROFILE_NAMES)
    assert smoke.data.train_size < quick.data.train_size < full.data.train_size
    assert smoke.fan.input_size <= quick.fan.input_size <= full.fan.input_size
    # the full profile is the thesis's own FAN (4.3.1-4.3.2)
    assert (full.fan.stacks, full.fan.width, full.fan.input_size, full.fan.heatmap_size) == (4, 256, 256, 64)
    assert (full.train.batch_size, full.train.epochs, full.train.lr) == (10, 40, 1e-4)


def test_heatmap_is_a_quarter_of_the_input():
    for name in PROFILE_NAMES:
        fan = get_profile(name).fan
        assert fan.input_size == 4 * fan.heatmap_size


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match="smoke, quick, full"):
        get_profile("fast")


def test_overrides_and_extra_knobs():
    p = with_extra(get_profile("smoke"), ch5_blocks=("hierarchical",))
    assert p.get("ch5_blocks") == ("hierarchical",)
    assert p.to_dict()["extra"]["ch5_blocks"] == ("hierarchical",)
    assert get_profile("smoke", description="x").description == "x"
