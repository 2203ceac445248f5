"""Packed inference (fa_lib.kernels.packed) against the training-time forward of fa_lib.models.binary:
integer popcounts bit for bit, outputs to float tolerance; packed-weights file round trip and size."""
import copy
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fa_lib.kernels import fileformat, packed, xnor
from fa_lib.models.binary import BinaryConv2d, bn_sign_conv
from fa_lib.models.blocks import make_block
from fa_lib.models.fan import binary_hourglass_net

ISAS = xnor.available_isas()

pytestmark = pytest.mark.usefixtures("amx_tile_kernel_everywhere")


def randomize_bn(model: torch.nn.Module, seed: int = 0, zero_fraction: float = 0.1) -> torch.nn.Module:
    """Eval-mode model whose BNs have negative, zero and positive gammas and non-trivial statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                gamma = torch.randn(m.num_features, generator=gen)
                gamma[torch.rand(m.num_features, generator=gen) < zero_fraction] = 0.0
                m.weight.copy_(gamma)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max().clamp(min=1)))


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 140), cout=st.integers(1, 70), k=st.sampled_from([1, 3]), h=st.integers(1, 8),
       w=st.integers(1, 8), relu_after=st.booleans(), isa=st.sampled_from(ISAS), seed=st.integers(0, 2**31 - 1))
def test_preact_unit_bit_exact(cin, cout, k, h, w, relu_after, isa, seed):
    unit = randomize_bn(bn_sign_conv(cin, cout, k, binary=True, relu_after=relu_after), seed)
    with torch.no_grad():
        unit.conv.weight.copy_(torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(seed)))
    x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(seed + 1))
    p = packed.pack_model(unit, isa=isa)
    assert isinstance(p, packed.PackedBinaryConv)
    with torch.no_grad():
        expected_int = unit.conv.integer_forward(unit.bn(x))
        assert torch.equal(p.integer_forward(x), expected_int)
        assert torch.equal(p(x), unit(x))  # alpha * integer, one rounding on both sides


def test_lone_binary_conv_uses_plain_sign():
    conv = BinaryConv2d(70, 20, 3, padding=1).eval()
    x = torch.randn(1, 70, 5, 6)
    x[0, :, 0, 0] = -0.0  # the sign rule: -0.0 -> +1
    for isa in ISAS:
        with torch.no_grad():
            assert torch.equal(packed.pack_model(conv, isa=isa)(x), conv(x))


@pytest.mark.parametrize("name,cin,cout,kwargs", [
    ("hierarchical", 64, 64, {}),
    ("hierarchical", 64, 128, {}),  # binary 1x1 projection shortcut
    ("hierarchical", 128, 64, {"shortcut": "fold"}),
    ("hierarchical", 96, 96, {"depth": 4, "cardinality": 2, "relu_after": True}),
    ("bottleneck", 64, 64, {}),
    ("bottleneck_no1x1", 64, 128, {}),
    ("multiscale", 64, 64, {}),
    ("multiscale_no1x1", 64, 64, {"relu_after": True}),
])
def test_blocks_match_training_forward(name, cin, cout, kwargs):
    block = randomize_bn(make_block(name, cin, cout, binary=True, **kwargs), seed=cin + cout)
    x = torch.randn(2, cin, 6, 7, generator=torch.Generator().manual_seed(5))
    for isa in ISAS:
        p = packed.pack_model(block, isa=isa)
        assert not any(isinstance(m, BinaryConv2d) for m in p.modules())
        with torch.no_grad():
            assert close(p(x), block(x)), (name, isa)
    if name == "hierarchical":
        assert isinstance(p, packed.PackedHierarchicalBlock)


@pytest.mark.parametrize("hourglass,stacks", [("standard", 1), ("improved", 2)])
def test_networks_match_training_forward(hourglass, stacks):
    net = randomize_bn(binary_hourglass_net(stacks=stacks, width=64, hourglass=hourglass, hg_depth=2,
                                            num_outputs=5), seed=stacks)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    p = packed.pack_model(net)
    with torch.no_grad():
        expected, got = net(x), p(x)
    assert len(got) == stacks
    for e, g in zip(expected, got):
        assert close(g, e)
    assert net.training is False and any(isinstance(m, BinaryConv2d) for m in net.modules())  # untouched


def test_pack_model_errors():
    with pytest.raises(ValueError, match="eval mode"):
        packed.pack_model(bn_sign_conv(8, 8, 3, binary=True))
    strided = bn_sign_conv(8, 8, 3, binary=True, stride=2).eval()
    with pytest.raises(ValueError, match="stride 1"):
        packed.pack_model(strided)


def test_file_round_trip_and_format(tmp_path):
    net = randomize_bn(binary_hourglass_net(stacks=1, width=64, hg_depth=2, num_outputs=5), seed=3)
    p = packed.pack_model(net)
    path = tmp_path / "net.fabin"
    size = packed.save_packed(p, path, config={"builder": "fa_lib.models.fan:FAN", "kwargs": net.config})
    assert path.stat().st_size == size
    raw = path.read_bytes()
    assert raw[:8] == fileformat.MAGIC and struct.unpack("<I", raw[8:12])[0] == fileformat.VERSION
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    loaded = packed.load_packed(path)  # skeleton rebuilt from the stored config
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], p(x)[0])
    # Corrupt files fail clearly.
    with pytest.raises(FileNotFoundError):
        packed.load_packed(tmp_path / "missing.fabin")
    unsafe = tmp_path / "unsafe.fabin"
    packed.save_packed(p, unsafe, config={"builder": "os:system", "kwargs": {"command": "true"}})
    with pytest.raises(ValueError, match="fa_lib.models"):
        packed.load_packed(unsafe)
    bad = tmp_path / "bad.fabin"
    bad.write_bytes(b"NOTMAGIC" + raw[8:])
    with pytest.raises(ValueError, match="magic"):
        fileformat.load(bad)
    bad.write_bytes(raw[:8] + struct.pack("<I", 99) + raw[12:])
    with pytest.raises(ValueError, match="version"):
        fileformat.load(bad)


def test_binary_entries_are_dense_sign_bits(tmp_path):
    weight = torch.randn(3, 5, 3, 3)
    weight[0, 0, 0, 0] = -0.0  # +1 under the sign rule
    negative = ~(weight.numpy() >= 0)
    path = tmp_path / "w.fabin"
    fileformat.save(path, {"w": ("binary", negative)})
    config, entries = fileformat.load(path)
    assert config is None
    np.testing.assert_array_equal(entries["w"][1], negative)
    # 135 bits -> 17 bytes in the file: 32x less than float32 (up to the last byte).
    assert fileformat.encode_binary(negative).__len__() == -(-weight.numel() // 8)
    assert not entries["w"][1][0, 0, 0, 0]


def test_compression_report(tmp_path):
    net = binary_hourglass_net(stacks=1, width=128, hg_depth=2, num_outputs=5).eval()
    report = packed.compression_report(net, tmp_path / "net.fabin")
    float_bytes = sum(v.numel() * 4 for v in net.state_dict().values() if v.is_floating_point())
    assert report["float32_state_dict_bytes"] == float_bytes
    assert report["packed_file_bytes"] == (tmp_path / "net.fabin").stat().st_size
    # Binary weights dominate, so the file is far smaller than float32, but cannot beat 32x.
    assert 10 < report["ratio_vs_float32"] < 32
    n_binary_convs = sum(isinstance(m, BinaryConv2d) for m in net.modules())
    assert report["binary_params"] <= 8 * report["binary_bits_bytes"] < report["binary_params"] + 8 * n_binary_convs


@pytest.mark.parametrize("isa", ISAS)
def test_stacked_network_equals_channels_last_training_forward(isa):
    """The packed module runs its real layers (stem, 1x1 heads, inter-stack adds) on channels-last tensors.
    PyTorch's float forward in that layout is the exact reference: every binary layer then sees bit-identical
    inputs, so the outputs agree to the last bit even where a sign sits at a threshold (the NCHW forward
    sums some real layers in another order, see table_5.packed_inference)."""
    net = randomize_bn(binary_hourglass_net(stacks=3, width=64, hg_depth=2, num_outputs=5), seed=11)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    p = packed.pack_model(net, isa=isa)
    with torch.no_grad():
        expected = net_cl(x.contiguous(memory_format=torch.channels_last))
        got = p(x)
    assert len(got) == 3
    for e, g in zip(expected, got):
        assert float((g - e).abs().max()) <= 1e-6 * float(e.abs().max().clamp(min=1))


def test_nchw_real_layers_equal_the_training_forward_bit_for_bit():
    """A trained-size network (quick-profile 3-stack shape, 128 px) whose NCHW and channels-last float
    forwards really differ in the last bits: real_layers="nchw" reproduces the NCHW forward exactly,
    the default reproduces the channels-last one exactly."""
    torch.manual_seed(3)
    net = randomize_bn(binary_hourglass_net(stacks=3, width=64, hg_depth=2, num_outputs=68,
                                            stem_channels=(16, 32)), seed=3)
    x = torch.rand(8, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    with torch.no_grad():
        nchw, cl = net(x), net_cl(x.contiguous(memory_format=torch.channels_last))
        default, exact = packed.pack_model(net)(x), packed.pack_model(net, real_layers="nchw")(x)
    # the premise: the float forward's own result depends on the layout here
    assert any(not torch.equal(a.contiguous(), b.contiguous()) for a, b in zip(nchw, cl))
    for a, b in zip(default, cl):
        assert torch.equal(a.contiguous(), b.contiguous())
    for a, b in zip(exact, nchw):
        assert torch.equal(a.contiguous(), b.contiguous())
    assert packed.pack_model(net, real_layers="nchw").real_layers == "nchw"
    with pytest.raises(ValueError, match="real_layers"):
        packed.pack_model(net, real_layers="nhwc")


def test_fast_real_layers_agree_with_the_exact_packing_to_float_rounding(tmp_path):
    """pack_model(real_layers="fast"): BN of the stem and heads folded, each real conv + ReLU one oneDNN
    pass; the binary layers are the same packed ones, so the heatmaps differ by float rounding only."""
    net = randomize_bn(binary_hourglass_net(stacks=2, width=64, hg_depth=2, num_outputs=5), seed=11)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(12))
    exact, fast = packed.pack_model(net), packed.pack_model(net, real_layers="fast")
    assert fast.real_layers == "fast"
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, BinaryConv2d)) for m in fast.modules())
    with torch.no_grad():
        expected, got = exact(x), fast(x)
    assert len(got) == 2
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.is_contiguous()
        assert close(g, e) and not torch.equal(g, e)  # float rounding, not bit for bit
    path = tmp_path / "net.fabin"
    packed.save_packed(exact, path, config={"builder": "fa_lib.models.fan:FAN", "kwargs": net.config})
    loaded = packed.load_packed(path, real_layers="fast")
    with torch.no_grad():
        assert torch.equal(loaded(x)[-1], got[-1])
    with pytest.raises(ValueError, match="FAN"):
        packed.pack_model(make_block("hierarchical", 64, 64, binary=True).eval(), real_layers="fast")
    with pytest.raises(ValueError, match="real_layers"):
        packed.load_packed(path, real_layers="nhwc")


def test_packed_block_is_one_native_call_per_input_size_and_thread():
    """The hierarchical block runs as one BlockProgram (fa_block_forward): built once per input size and
    calling thread, rebuilt when a layer's weights are replaced, never shared with a copy; concurrent
    calls from several threads give the single-threaded results."""
    from concurrent.futures import ThreadPoolExecutor

    block = randomize_bn(make_block("hierarchical", 64, 128, binary=True), seed=13)
    p = packed.pack_model(block)
    xs = [torch.randn(1, 64, 6, 7, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        expected = [block(x) for x in xs]
        first = p(xs[0])
        programs = packed._BLOCK_PROGRAMS[p]
        assert len(programs) == 1
        (key, parts, program), = programs.values()
        p(xs[1])
        assert next(iter(programs.values()))[2] is program  # same size and thread: reused
        assert close(first, expected[0])

        def repeat(x):
            return [p(x) for _ in range(10)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(repeat, xs))
    for x_results, e in zip(results, expected):
        assert all(close(r, e) for r in x_results)
    copied = copy.deepcopy(p)
    assert copied not in packed._BLOCK_PROGRAMS
    with torch.no_grad():
        assert torch.equal(copied(xs[2]), p(xs[2]))
        conv = p.chains[0][0]
        flipped = xnor.PackedWeights(~conv.weights.bits, conv.weights.alpha, conv.weights.in_channels,
                                     conv.weights.kernel_size)
        conv.weights = flipped  # every sign of the first layer flipped: a rebuilt program sees it
        assert not torch.equal(p(xs[2]), copied(xs[2]))


def test_block_program_rejects_bad_wiring_and_inputs():
    w = xnor.pack_weights(torch.randn(32, 40, 3, 3))
    lo, hi = xnor.sign_thresholds(None, 40)
    with pytest.raises(ValueError, match="earlier step"):
        xnor.BlockProgram(1, 4, 4, 40, [(lo, hi, 1)], [xnor.ConvStep(w, ("conv", 0), 0)])
    with pytest.raises(ValueError, match="thresholds"):
        xnor.BlockProgram(1, 4, 4, 40, [(lo[:3], hi, 1)], [xnor.ConvStep(w, ("pack", 0), 0)])
    program = xnor.BlockProgram(1, 4, 4, 40, [(lo, hi, 1)], [xnor.ConvStep(w, ("pack", 0), 0)])
    x = torch.randn(1, 40, 4, 4).contiguous(memory_format=torch.channels_last)
    out = torch.empty(1, 32, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="shortcut"):
        program.run(x, out)
    with pytest.raises(ValueError, match="shape"):
        program.run(torch.randn(1, 40, 5, 4), out, out)
    got = program.run(x, out, torch.zeros_like(out))
    assert torch.equal(got, xnor.binary_conv(xnor.pack_activations(x, lo, hi, pad=1), w))


@pytest.mark.parametrize("cin,cout,kwargs", [(64, 64, {}), (64, 128, {}), (128, 64, {"shortcut": "fold"}),
                                             (96, 96, {"depth": 4, "cardinality": 2, "relu_after": True})])
def test_row_interleaved_block_equals_layer_by_layer(cin, cout, kwargs):
    """With one thread a block's convolutions run row by row, each behind its producer (fa_block_forward);
    the outputs are those of running them layer by layer, bit for bit, on every ISA."""
    block = randomize_bn(make_block("hierarchical", cin, cout, binary=True, **kwargs), seed=cin + 7)
    x = torch.randn(2, cin, 9, 7, generator=torch.Generator().manual_seed(6))
    for isa in ISAS:
        p = packed.pack_model(block, isa=isa, threads=1)
        try:
            with torch.no_grad():
                xnor.set_block_layer_by_layer(True)
                layered = p(x)
                xnor.set_block_layer_by_layer(False)
                interleaved = p(x)
        finally:
            xnor.set_block_layer_by_layer(False)
        assert torch.equal(interleaved, layered), isa
        with torch.no_grad():
            assert close(interleaved, block(x)), isa


def _count_prepacked(monkeypatch) -> list:
    calls = []
    run = xnor.BlockProgram.run

    def spy(self, *args, prepacked=(), **kwargs):
        calls.append(tuple(prepacked))
        return run(self, *args, prepacked=prepacked, **kwargs)
    monkeypatch.setattr(xnor.BlockProgram, "run", spy)
    return calls


@pytest.mark.parametrize("isa", ISAS)
def test_block_program_packs_its_output_for_the_next_block(isa):
    """BlockProgram(final=...): the epilogues storing the block output also pack it under another threshold
    set, bit for bit what packing the output afterwards gives; steps not on 32-channel boundaries refuse."""
    block = randomize_bn(make_block("hierarchical", 128, 128, binary=True), seed=21)
    p = packed.pack_model(block, isa=isa, threads=1)
    x = torch.randn(2, 128, 7, 9, generator=torch.Generator().manual_seed(4)).contiguous(memory_format=torch.channels_last)
    plain = p._program(2, 7, 9)
    lo, hi = torch.randn(128).sort(descending=False)[0], torch.full((128,), 0.5)
    lo = torch.minimum(lo, hi)
    target = xnor.empty_packed(2, 128, 7, 9, pad=1)
    first = p.chains[0][0]
    program = xnor.BlockProgram(2, 7, 9, 128, [(first.lo, first.hi, 1)], plain.steps, isa=isa, final=(lo, hi, target))
    out = torch.empty_like(x)
    with torch.no_grad():
        program.run(x, out, x, threads=1)
        assert torch.equal(out, p(x))
    assert torch.equal(target.words, xnor.pack_activations(out, lo, hi, pad=1).words)
    narrow = randomize_bn(make_block("hierarchical", 64, 64, binary=True), seed=2)  # 32 + 16 + 16 channels
    q = packed.pack_model(narrow, isa=isa, threads=1)
    steps = q._program(1, 4, 4).steps
    assert not xnor.BlockProgram.final_capable(steps, isa)
    with pytest.raises(ValueError, match="multiple of 32"):
        xnor.BlockProgram(1, 4, 4, 64, [(q.chains[0][0].lo, q.chains[0][0].hi, 1)], steps, isa=isa,
                          final=(torch.zeros(64), torch.ones(64), xnor.empty_packed(1, 64, 4, 4)))


@pytest.mark.parametrize("real_layers", ["channels_last", "fast"])
def test_cross_block_packing_gives_the_same_outputs_on_every_isa(real_layers, monkeypatch):
    """With cross_block_packing a block feeding another packs its output for it: learned on the first call
    (channels_last, whose tensors have version counters) or along the hourglass's declared edges (fast, run
    under inference_mode); the outputs are those of the plain packing, bit for bit, and blocks do skip their
    packing pass from the calls after."""
    net = randomize_bn(binary_hourglass_net(stacks=2, width=128, hg_depth=2, num_outputs=5), seed=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    calls = _count_prepacked(monkeypatch)
    for isa in ISAS:
        plain = packed.pack_model(net, isa=isa, real_layers=real_layers)
        fused = packed.pack_model(net, isa=isa, real_layers=real_layers, cross_block_packing=True)
        assert not any(m.cross_block for m in plain.modules() if isinstance(m, packed.PackedHierarchicalBlock))
        with torch.no_grad():
            expected = plain(x)
            for _ in range(3):
                calls.clear()
                got = fused(x)
                assert all(torch.equal(a, b) for a, b in zip(got, expected)), isa
        # conv3 -> conv4 -> m0.b1_2, and per stack b2_2 -> b1_1, b2_1 -> b2_plus_1 -> b3_1 (hourglass depth 2)
        assert sum(bool(c) for c in calls) == 8, (isa, calls)
        copied = copy.deepcopy(fused)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(copied(x), expected))


def test_cross_block_packing_is_not_used_when_the_tensor_changed_in_between(monkeypatch):
    """A module between two blocks that changes the first block's output in place: the second block packs
    it itself (the version counter tells), with or without inference_mode (inference tensors have no
    counter: only declared edges are trusted, and this one is not)."""
    class AddOne(torch.nn.Module):
        def forward(self, x):
            return x.add_(1.0)

    first = randomize_bn(make_block("hierarchical", 128, 128, binary=True), seed=5)
    second = randomize_bn(make_block("hierarchical", 128, 128, binary=True), seed=6)
    model = torch.nn.Sequential(first, AddOne(), second).eval()
    x = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(2))
    calls = _count_prepacked(monkeypatch)
    plain = packed.pack_model(model)
    fused = packed.pack_model(model, cross_block_packing=True)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            expected = plain(x)
            calls.clear()
            for _ in range(3):
                assert torch.equal(fused(x), expected)
        assert not any(calls), mode
    direct = packed.pack_model(torch.nn.Sequential(first, second).eval(), cross_block_packing=True)
    with torch.no_grad():
        calls.clear()
        for _ in range(3):
            direct(x)
    assert sum(bool(c) for c in calls) == 2  # learned on the first call, used on the next two
    assert packed.link_blocks(fused[0], fused[2]) and not packed.link_blocks(fused[0], fused[1])
