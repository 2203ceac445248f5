"""Binary layers of chapter 5 (thesis eq. 5.1-5.2) and their real-valued twins.

Eq. 5.1: ``I * W ~ (sign(I) (x) sign(W)) * alpha`` with eq. 5.2 ``alpha = ||W||_1 / n`` per output
channel. Every binary layer of the library is built here, and every one has a real-valued twin
selected by a single ``binary`` argument (:func:`bn_sign_conv`, :func:`make_conv`).

THE binary layer rule (the training-time forward; the bit-packed kernels of ``fa_lib.kernels``
must reproduce it exactly):

1. ``sign(v) = +1 if v >= 0 else -1``. It is a comparison against 0, never a read of the float
   sign bit: ``-0.0 -> +1``, ``+0.0 -> +1``, ``NaN -> -1``. (``torch.sign(0) == 0`` would give a
   third value; it is never used.)
2. Activations and weights are both binarized with that rule.
3. Spatial padding is ZERO padding applied AFTER the activation sign: a border tap contributes
   0 (it is neither +1 nor -1). A packed kernel that pads with +1 bits must subtract that
   contribution again (border correction).
4. The integer result is the +-1 dot product over (input channel, tap) with those zero taps;
   the layer output is ``alpha[c] * integer`` (one float multiplication per output). Folding
   ``alpha`` into the weights rounds differently and is not the rule.
5. No bias, no activation scale K (the author's Torch code has neither).

Backward (training only): straight-through estimator, the gradient of ``sign`` is 1 where
``|v| < 1`` and 0 where ``|v| >= 1`` (hard-tanh STE of XNOR-Net/the author's code). ``alpha`` is
``mean |W|`` of the real weights, differentiated normally.

First and last layers of a network stay real (thesis 5.2.1); that is decided by the network
constructors, not here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "sign_pm1",
    "binarize_sign_ste",
    "weight_scale",
    "BinaryConv2d",
    "make_conv",
    "pre_activation",
    "PreActConv",
    "bn_sign_conv",
]


def sign_pm1(x: torch.Tensor) -> torch.Tensor:
    """The library's sign: +1 where ``x >= 0`` (so -0.0 -> +1), -1 elsewhere (NaN -> -1)."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


class _SignSTE(torch.autograd.Function):
    """sign forward, straight-through backward clipped to |x| < 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign_pm1(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() < 1).to(grad_output.dtype)


def binarize_sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Binarize to {-1, +1} (eq. 5.1) with the straight-through gradient (zero where |x| >= 1)."""
    return _SignSTE.apply(x)


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """Eq. 5.2: ``alpha[c] = mean |W[c]|`` over the input channels and taps of output channel c."""
    if weight.ndim < 2:
        raise ValueError(f"weight must have an output-channel dimension, got shape {tuple(weight.shape)}")
    return weight.abs().flatten(1).mean(dim=1)


class BinaryConv2d(nn.Conv2d):
    """Convolution with binary activations and binary weights (eq. 5.1-5.2).

    A drop-in ``nn.Conv2d`` (same ``weight`` parameter and state_dict key, so a binary network and
    its real twin share one checkpoint layout) whose forward is::

        alpha[c] * conv2d(sign(x), sign(W), zero padding after the sign)[c]

    following the binary layer rule of this module's docstring. The input is the real-valued
    pre-activation (normally a BatchNorm output): the sign is taken here, so no separate sign
    layer precedes a ``BinaryConv2d``. ``bias`` and non-zero padding modes are refused.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, padding_mode: str = "zeros"):
        if bias:
            raise ValueError("BinaryConv2d has no bias (thesis 5.4: biases removed); pass bias=False")
        if padding_mode != "zeros":
            raise ValueError(f"BinaryConv2d pads with zeros after the sign; padding_mode={padding_mode!r} "
                             "is not supported")
        if isinstance(padding, str):
            raise ValueError("BinaryConv2d needs an explicit integer padding")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)

    def scale(self) -> torch.Tensor:
        """``alpha`` of eq. 5.2, shape (out_channels,)."""
        return weight_scale(self.weight)

    def binary_weight(self) -> torch.Tensor:
        """``sign(W)`` in {-1, +1} (no gradient trick here: use for inspection and packing)."""
        return sign_pm1(self.weight.detach())

    def _integer_conv(self, x: torch.Tensor) -> torch.Tensor:
        xb = binarize_sign_ste(x)
        wb = binarize_sign_ste(self.weight)
        # F.conv2d pads the already-binarized input with 0.0: rule 3 (border taps contribute 0).
        out = F.conv2d(xb, wb, None, self.stride, self.padding, self.dilation, self.groups)
        # Sums of +-1/0 terms are exact in float32 (|sum| <= K*K*Cin << 2**24), but FFT/Winograd
        # conv algorithms (some GPU back-ends) are not: snap to the integer, keep the STE gradient.
        return out + (out.round() - out).detach()

    def integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The integer-valued +-1 convolution before ``alpha`` (float tensor holding integers)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self._integer_conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self._integer_conv(x) * self.scale().view(1, -1, 1, 1)


def make_conv(in_channels: int, out_channels: int, kernel_size: int, binary: bool, *, stride: int = 1,
              padding: int | None = None, bias: bool = False) -> nn.Conv2d:
    """A convolution that is binary (:class:`BinaryConv2d`) or real (``nn.Conv2d``); "same" padding
    by default. Binary convolutions never have a bias."""
    if padding is None:
        padding = kernel_size // 2
    if binary:
        return BinaryConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)


def pre_activation(binary: bool) -> nn.Module:
    """The activation between BatchNorm and a convolution: ReLU for the real twin; for the binary
    layer nothing (``BinaryConv2d`` takes the sign of its input itself: a ReLU before the sign
    would turn the activations into {0, +1} and the sign into a constant +1)."""
    return nn.Identity() if binary else nn.ReLU(inplace=False)


class PreActConv(nn.Module):
    """Pre-activation unit BN -> sign (binary) / ReLU (real) -> conv, optionally ReLU after.

    Submodules ``bn``, ``act``, ``conv``. ``relu_after`` adds a ReLU after the convolution (thesis
    Table 5.9: "+ ReLU" after each binary convolution gives +2.5% AUC).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, binary: bool,
                 relu_after: bool = False, stride: int = 1):
        super().__init__()
        self.binary = bool(binary)
        self.relu_after = bool(relu_after)
        self.bn = nn.BatchNorm2d(in_channels)
        self.act = pre_activation(binary)
        self.conv = make_conv(in_channels, out_channels, kernel_size, binary, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.act(self.bn(x)))
        return F.relu(out) if self.relu_after else out


def bn_sign_conv(in_channels: int, out_channels: int, kernel_size: int, binary: bool,
                 relu_after: bool = False, stride: int = 1) -> PreActConv:
    """BN -> sign -> binary conv (``binary=True``) or BN -> ReLU -> conv (its real twin)."""
    return PreActConv(in_channels, out_channels, kernel_size, binary, relu_after=relu_after, stride=stride)
