"""Official face-alignment (v1.5.0, BSD-3) FAN / ResNetDepth state_dicts load into ours and give the
same outputs.

The public package's ``face_alignment/__init__`` imports its API, which needs numba and the face
detectors; its ``models/fan.py`` and ``models/resnet.py`` only need torch, so they are loaded
directly by file path. Install it with ``pip install --no-deps face-alignment==1.5.0``; the tests
are skipped when it is absent. Official weights cannot be downloaded here: random weights (with
random BatchNorm statistics, so every BN matters) stand in for them.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from fa_lib.heatmaps import decode_heatmaps
from fa_lib.models import (CheckpointMismatchError, FAN, load_official_depth, load_official_fan, load_weights,
                           read_state_dict)


def _official_module(name: str):
    spec = importlib.util.find_spec("face_alignment")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-alignment==1.5.0 is not installed (pip install --no-deps face-alignment==1.5.0)")
    path = Path(spec.submodule_search_locations[0]) / "models" / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"face-alignment layout changed: {path} not found")
    module_spec = importlib.util.spec_from_file_location(f"_official_face_alignment_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
    return model.eval()


def _face_crop() -> torch.Tensor:
    """A real 256x256 face crop (scikit-image's astronaut), RGB / 255 as the official API feeds it."""
    from skimage.data import astronaut

    image = astronaut()[20:276, 130:386]  # the face and its surroundings, 256 x 256
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)


@pytest.fixture(scope="module")
def official_fan4():
    torch.manual_seed(0)
    return _randomise_batchnorm(_official_module("fan").FAN(4), seed=1)


@pytest.fixture(scope="module")
def official_fan1():
    torch.manual_seed(2)
    return _randomise_batchnorm(_official_module("fan").FAN(1), seed=3)


def test_official_fan4_loads_strictly_and_gives_identical_heatmaps_and_points(official_fan4):
    ours = load_official_fan(official_fan4.state_dict())
    assert ours.config["num_modules"] == 4
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in official_fan4.parameters())
    crop = _face_crop()
    with torch.no_grad():
        theirs_out = official_fan4(crop)
        ours_out = ours(crop)
    assert len(theirs_out) == len(ours_out) == 4
    for theirs, mine in zip(theirs_out, ours_out):
        assert mine.shape == (1, 68, 64, 64)
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
    points_theirs, _ = decode_heatmaps(theirs_out[-1])
    points_ours, _ = decode_heatmaps(ours_out[-1])
    assert torch.equal(points_ours, points_theirs)


def test_official_fan_checkpoint_files_with_wrappers_and_module_prefix(official_fan1, tmp_path):
    # The file forms are independent of the stack count: FAN(1) keeps the files small.
    state = official_fan1.state_dict()
    wrapped = tmp_path / "2DFAN1.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    for path in (wrapped, plain):
        loaded = read_state_dict(path)
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    model = load_official_fan(wrapped)
    assert model.config["num_modules"] == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        load_weights(FAN(1), {k: v for k, v in state.items() if not k.startswith("m0.b3_")})


def test_official_torchscript_archive(official_fan1, tmp_path):
    # face-alignment >= 1.1 distributes TorchScript archives; their weights are read without the graph.
    path = tmp_path / "2DFAN1.zip"
    with pytest.warns(Warning):  # tracing a list output / jit deprecation warnings
        torch.jit.save(torch.jit.trace(official_fan1, torch.rand(1, 3, 64, 64), check_trace=False), str(path))
    ours = load_official_fan(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[-1], official_fan1(x)[-1], atol=1e-5, rtol=0)


def test_official_resnet152_depth_network_loads_strictly():
    # Key and shape equality of the full ResNet-152; the forward pass is compared on the small
    # network of the next test (same code, fewer bottlenecks), which keeps this file fast.
    torch.manual_seed(5)
    official = _official_module("resnet").ResNetDepth()
    ours = load_official_depth({"module." + k: v for k, v in official.state_dict().items()})
    assert ours.config["layers"] == (3, 8, 36, 3)
    assert sum(p.numel() for p in ours.parameters()) == 58_496_388
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in official.state_dict().items())


def test_official_depth_checkpoint_file(tmp_path):
    # Same key layout at every depth: one bottleneck per stage keeps the file and the forward small.
    torch.manual_seed(8)
    official = _randomise_batchnorm(_official_module("resnet").ResNetDepth(layers=[1, 1, 1, 1]), seed=9)
    path = tmp_path / "depth.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in official.state_dict().items()}}, path)
    ours = load_official_depth(path)
    assert ours.config["layers"] == (1, 1, 1, 1)
    generator = torch.Generator().manual_seed(7)
    x = torch.cat([_face_crop(), torch.rand(1, 68, 256, 256, generator=generator)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), atol=1e-5, rtol=0)
