"""Residual blocks of chapter 5 (Fig. 5.3 (a)-(e), 5.7, 5.8) and their binary twins."""
import pytest
import torch
import torch.nn as nn

from fa_lib.models.binary import BinaryConv2d
from fa_lib.models.blocks import BLOCKS, HierarchicalBlock, hierarchical_widths, make_block
from fa_lib.models.fan import parameter_count


def _bn(c):  # BatchNorm weight + bias
    return 2 * c


# Hand-computed parameter counts of each block at 256 -> 256 (convolutions have no bias).
EXPECTED_256 = {
    "bottleneck": 256 * 128 + 128 * 128 * 9 + 128 * 256 + _bn(256) + _bn(128) + _bn(128),
    "wider": 256 * 256 + 256 * 256 * 9 + 256 * 256 + 3 * _bn(256),
    "bottleneck_no1x1": 256 * 128 * 9 + 128 * 256 * 9 + _bn(256) + _bn(128),
    "multiscale": (256 * 64 + _bn(256)) + (64 * 64 * 9 + _bn(64)) + 2 * (256 * 32 * 9 + _bn(256))
    + (32 * 32 * 9 + _bn(32)) + (128 * 256 + _bn(128)),
    "multiscale_no1x1": (256 * 128 * 9 + _bn(256)) + 2 * (256 * 64 * 9 + _bn(256)) + (64 * 64 * 9 + _bn(64)),
    "hierarchical": 256 * 128 * 9 + 128 * 64 * 9 + 64 * 64 * 9 + _bn(256) + _bn(128) + _bn(64),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_256))
def test_parameter_counts_at_256(name):
    with torch.device("meta"):
        block = make_block(name, 256, 256)
    assert parameter_count(block) == EXPECTED_256[name]


def test_hierarchical_block_is_the_official_convblock():
    assert EXPECTED_256["hierarchical"] == 406_400  # the official ConvBlock(256, 256) of face-alignment v1.5
    same = HierarchicalBlock(256, 256)
    assert sorted({k.rsplit(".", 1)[0] for k in same.state_dict()}) == ["bn1", "bn2", "bn3", "conv1", "conv2", "conv3"]
    projected = HierarchicalBlock(128, 256)
    keys = set(projected.state_dict())
    assert {"downsample.0.weight", "downsample.0.running_var", "downsample.2.weight"} <= keys
    assert projected.conv1.weight.shape == (128, 128, 3, 3)
    assert projected.conv3.weight.shape == (64, 64, 3, 3)
    assert projected.downsample[2].weight.shape == (256, 128, 1, 1)


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("binary", [False, True])
def test_every_block_maps_shapes_and_twins_share_keys(name, binary):
    torch.manual_seed(0)
    block = make_block(name, 16, 32, binary=binary)
    out = block(torch.randn(2, 16, 8, 8))
    assert out.shape == (2, 32, 8, 8)
    twin = make_block(name, 16, 32, binary=not binary)
    assert {k: v.shape for k, v in block.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, BinaryConv2d) == binary for m in convs)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_binary_blocks_pass_gradients_to_every_weight(name):
    torch.manual_seed(1)
    block = make_block(name, 16, 32, binary=True)
    block(torch.randn(2, 16, 8, 8)).square().mean().backward()
    for key, parameter in block.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key


def test_identity_and_fold_shortcuts():
    torch.manual_seed(2)
    x = torch.randn(1, 32, 4, 4)
    block = make_block("hierarchical", 32, 32).eval()
    fold = make_block("hierarchical", 64, 32, shortcut="fold").eval()
    assert fold.downsample is None
    for module in (block, fold):
        for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
            nn.init.zeros_(conv.weight)
    assert torch.equal(block(x), x)  # body is zero: the residual is the identity
    y = torch.randn(1, 64, 4, 4)
    assert torch.equal(fold(y), y[:, :32] + y[:, 32:])
    with pytest.raises(ValueError, match="fold"):
        make_block("hierarchical", 48, 32, shortcut="fold")
    with pytest.raises(ValueError, match="identity"):
        make_block("bottleneck", 16, 32, shortcut="identity")


def test_hierarchical_widths_halve_and_sum_to_output():
    assert hierarchical_widths(256, 3) == [128, 64, 64]
    assert hierarchical_widths(256, 8) == [128, 64, 32, 16, 8, 4, 2, 2]
    for depth in range(1, 9):
        assert sum(hierarchical_widths(256, depth)) == 256
    with pytest.raises(ValueError):
        hierarchical_widths(24, 5)


def test_depth_variants_keep_parameters_about_constant():
    with torch.device("meta"):
        counts = [parameter_count(make_block("hierarchical", 256, 256, depth=d)) for d in range(3, 9)]
    assert all(abs(c / counts[0] - 1) < 0.15 for c in counts)
    assert counts == sorted(counts, reverse=True)  # halving the last layers only removes weights
    block = make_block("hierarchical", 32, 32, depth=5)
    assert block(torch.randn(1, 32, 6, 6)).shape == (1, 32, 6, 6)
    assert block.conv5.weight.shape == (2, 2, 3, 3)


def test_cardinality_variants_concatenate_parallel_paths():
    block = make_block("hierarchical", 32, 32, cardinality=4)
    assert len(block.branches) == 4
    # every path reads all 32 inputs, with 32/4 outputs split 4, 2, 2
    assert block.branches[0].conv1.weight.shape == (4, 32, 3, 3)
    assert block.branches[3].conv3.weight.shape == (2, 2, 3, 3)
    assert block(torch.randn(2, 32, 5, 5)).shape == (2, 32, 5, 5)
    with torch.device("meta"):
        c1 = parameter_count(make_block("hierarchical", 256, 256, cardinality=1))
        c16 = parameter_count(make_block("hierarchical", 256, 256, cardinality=16))
    assert c16 < c1  # first-layer weights are unchanged, the later layers shrink by C
    with pytest.raises(ValueError, match="cardinality"):
        make_block("hierarchical", 32, 36, cardinality=8)


def test_reduced_block_of_fig_5_1b():
    block = make_block("hierarchical", 192, 192)
    assert [getattr(block, f"conv{i}").weight.shape[:2] for i in (1, 2, 3)] == [(96, 192), (48, 96), (48, 48)]


def test_bad_block_arguments():
    with pytest.raises(ValueError, match="unknown block"):
        make_block("resnext", 16, 16)
    with pytest.raises(ValueError, match="positive"):
        make_block("hierarchical", 0, 16)
    with pytest.raises(ValueError, match="expects"):
        make_block("hierarchical", 16, 16)(torch.zeros(1, 8, 4, 4))
