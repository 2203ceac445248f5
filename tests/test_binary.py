"""Binary layers (thesis eq. 5.1-5.2) and the binary layer rule the kernels match."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from fa_lib.models.binary import (BinaryConv2d, PreActConv, binarize_sign_ste, bn_sign_conv, make_conv, sign_pm1,
                                  weight_scale)


def test_sign_rule_zero_and_negative_zero_are_plus_one():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0, float("nan")])
    assert sign_pm1(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
    assert binarize_sign_ste(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0]


def test_ste_gradient_is_zero_where_abs_at_least_one():
    x = torch.tensor([-1.5, -1.0, -0.99, 0.0, 0.5, 0.999, 1.0, 2.0], requires_grad=True)
    binarize_sign_ste(x).backward(torch.arange(1.0, 9.0))
    assert x.grad.tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0]


def test_weight_scale_is_mean_abs_per_output_channel():
    w = torch.tensor([[[[1.0, -3.0]]], [[[0.5, 0.5]]]])  # (2, 1, 1, 2)
    assert weight_scale(w).tolist() == [2.0, 0.5]


def test_binary_conv_hand_computed_with_zero_padding_after_sign():
    conv = BinaryConv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.5, -0.5, 0.5], [0.5, 0.5, 0.5], [-0.5, 0.5, 0.5]]]]))
    # Negative inputs become -1; the zero border contributes nothing (not +1, not -1).
    x = torch.tensor([[[[-3.0, 2.0], [0.0, -0.0]]]])
    integer = conv.integer_forward(x)
    # sign(x) = [[-1, 1], [1, 1]]; sign(w) = [[1,-1,1],[1,1,1],[-1,1,1]]
    # out(0,0) taps centre..: w[1][1]*-1 + w[1][2]*1 + w[2][1]*1 + w[2][2]*1 = -1+1+1+1 = 2
    # out(0,1): w[1][0]*-1 + w[1][1]*1 + w[2][0]*1 + w[2][1]*1 = -1+1-1+1 = 0
    # out(1,0): w[0][1]*-1 + w[0][2]*1 + w[1][1]*1 + w[1][2]*1 = 1+1+1+1 = 4
    # out(1,1): w[0][0]*-1 + w[0][1]*1 + w[1][0]*1 + w[1][1]*1 = -1-1+1+1 = 0
    assert integer.tolist() == [[[[2.0, 0.0], [4.0, 0.0]]]]
    assert torch.equal(conv(x), integer * 0.5)


def _reference_integer_conv(x, w, padding):
    """Brute-force +-1 dot products with zero taps outside the image (numpy, int64)."""
    xs = np.where(x >= 0, 1, -1).astype(np.int64)
    ws = np.where(w >= 0, 1, -1).astype(np.int64)
    n, c, h, wd = xs.shape
    cout, _, k, _ = ws.shape
    padded = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=np.int64)
    padded[:, :, padding:padding + h, padding:padding + wd] = xs
    oh, ow = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    out = np.zeros((n, cout, oh, ow), dtype=np.int64)
    for i, j in itertools.product(range(oh), range(ow)):
        patch = padded[:, :, i:i + k, j:j + k]
        out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, ws)
    return out


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 7), cout=st.integers(1, 5), k=st.sampled_from([1, 3, 5]), h=st.integers(1, 6),
       w=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_integer_forward_matches_brute_force_and_output_is_alpha_times_integer(cin, cout, k, h, w, seed):
    generator = torch.Generator().manual_seed(seed)
    conv = BinaryConv2d(cin, cout, k, padding=k // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    x = torch.randn(2, cin, h, w, generator=generator)
    x[x.abs() < 0.3] = 0.0  # exact zeros must count as +1
    integer = conv.integer_forward(x)
    expected = _reference_integer_conv(x.numpy(), conv.weight.detach().numpy(), k // 2)
    assert np.array_equal(integer.detach().numpy().astype(np.int64), expected)
    alpha = conv.weight.detach().abs().mean(dim=(1, 2, 3))
    assert torch.equal(conv(x).detach(), integer.detach() * alpha.view(1, -1, 1, 1))


def test_binary_conv_refuses_bias_and_non_zero_padding_modes():
    with pytest.raises(ValueError, match="bias"):
        BinaryConv2d(4, 4, 3, padding=1, bias=True)
    with pytest.raises(ValueError, match="padding_mode"):
        BinaryConv2d(4, 4, 3, padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="expected input"):
        BinaryConv2d(4, 4, 3, padding=1)(torch.zeros(1, 3, 5, 5))


def test_binary_conv_gradients_reach_weights_and_inputs():
    torch.manual_seed(0)
    conv = BinaryConv2d(8, 4, 3, padding=1)
    x = (0.5 * torch.randn(2, 8, 6, 6)).requires_grad_()
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    # STE: inputs with |x| >= 1 get no gradient.
    assert torch.all(x.grad[x.detach().abs() >= 1] == 0)


def test_binary_and_real_twins_share_keys_and_shapes():
    binary = bn_sign_conv(16, 8, 3, binary=True)
    real = bn_sign_conv(16, 8, 3, binary=False)
    assert isinstance(binary, PreActConv) and isinstance(binary.conv, BinaryConv2d)
    assert type(real.conv) is nn.Conv2d and isinstance(real.act, nn.ReLU)
    assert {k: v.shape for k, v in binary.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    x = torch.randn(2, 16, 5, 5)
    assert binary(x).shape == real(x).shape == (2, 8, 5, 5)


def test_binary_unit_has_no_relu_before_the_sign():
    # A ReLU before the sign would map every activation to {0 -> +1}: all outputs equal.
    unit = bn_sign_conv(4, 2, 1, binary=True).eval()
    x = torch.randn(1, 4, 3, 3)
    signs = unit.conv.integer_forward(unit.act(unit.bn(x)))
    assert set(torch.unique(signs).tolist()) <= {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert len(torch.unique(sign_pm1(unit.act(unit.bn(x))))) == 2


def test_relu_after_makes_outputs_non_negative():
    unit = bn_sign_conv(4, 6, 3, binary=True, relu_after=True)
    assert (unit(torch.randn(2, 4, 5, 5)) >= 0).all()


def test_make_conv_same_padding_and_bias_rules():
    assert make_conv(3, 5, 3, binary=False, bias=True).bias is not None
    conv = make_conv(3, 5, 5, binary=True)
    assert isinstance(conv, BinaryConv2d) and conv.padding == (2, 2) and conv.bias is None
