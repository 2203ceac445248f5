"""Fast, exact CPU inference for FAN (thesis 4.3, Fig. 4.2) and its depth network (4.8).

FAN is built from pre-activation blocks (BatchNorm -> ReLU -> conv, thesis 5.1, as the official FAN code). In
eager PyTorch on a CPU about a third of a FAN forward is not convolution but per-element passes:
BatchNorm, ReLU, the concatenation of the hierarchical block's three outputs and the residual
addition (measured with ``torch.profiler``). :func:`optimize_for_inference` rewrites a trained FAN
into an equivalent network with fewer passes, without changing what it computes (outputs agree to
float rounding, ~1e-6; ``tests/test_bench_fan.py`` checks 1e-4):

1. *Conv -> BN* pairs (the stem's ``conv1 -> bn1`` and each stack's ``conv_last -> bn_end``) are
   folded into the convolution's weights and bias, the textbook exact fold.
2. *BN -> ReLU -> conv* (every unit of every block, where the BN cannot be folded into the
   previous conv because the block input is a sum and the hierarchical block's intermediate
   outputs are also concatenated) uses the identity, for a per-channel affine ``s x + t``::

       relu(s x + t) = s * clamp(x, lo, hi) + c
         s > 0: lo = -t / s, hi = +inf, c = t
         s < 0: lo = -inf,  hi = -t / s, c = t
         s = 0: (any clamp),           c = relu(t)

   The factor ``s`` is folded into the input channels of the following convolution and the
   constant ``c`` into its bias. With zero padding a constant input does not give a constant
   output on the border (the padded pixels contribute nothing), so the exact border difference,
   a fixed map per input size, is added back on the one-pixel ring of 3x3 convolutions. BN + ReLU
   (two passes) becomes one clamp pass.
3. The hierarchical block writes ``residual + cat(o1, o2, o3)`` into one preallocated tensor
   (no separate concatenation pass).
4. Tensors use the channels-last memory format (oneDNN's native layout: no reorder per conv),
   and :class:`FastFAN` runs under ``torch.inference_mode``.

Only real (non-binary) hierarchical blocks with the official layout are rewritten (cardinality 1,
no ReLU after the convolutions); any other block is kept as it is, so every FAN still works.
The depth ResNet (post-activation, conv -> BN) gets the textbook fold of every BN into its conv.

**Compiled mode** (``optimize_for_inference(model, compile=True)``, :class:`CompiledFAN`). After
the rewrite above, about three quarters of an eager FastFAN forward is oneDNN convolution running near the
CPU's FP32 peak; what is left is the per-element passes, which eager PyTorch cannot merge (each
convolution output is needed twice: raw for the concatenation + residual, activated for the next
convolution). ``torch.compile`` with the inductor CPU backend and freezing (weights as constants:
conv -> BN folded, weights prepacked for oneDNN) generates C++ kernels that do BN + ReLU, the
concatenation, the residual and the hourglass upsampling-add in fused passes. Measured with
``fa-lib bench fan`` (FAN-4, 256 px, 2 threads; interleaved with the official module): eager
FastFAN about 1.2x the official eager module, the compiled plain FAN in channels-last about 1.35-1.5x.
Compiling the clamp-folded FastFAN graph instead was slower (its border corrections are extra
passes that inductor cannot remove), ``max-autotune-no-cudagraphs`` did not change the time, the
C++ wrapper (``cpp_wrapper``) gained under 1 % (noise) for a 5x longer compilation, and
``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference`` reached only about 1.07x. Compiling
costs about 35-50 s on 2 cores, once per instance and input shape (measured: a second process
compiles as long; inductor's on-disk cache does not shorten frozen graphs much).
Without a working C++ compiler (or without TorchDynamo support) :class:`CompiledFAN` warns and
runs the eager FastFAN instead.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.blocks import HierarchicalBlock
from .models.depth import DepthBottleneck, FanFull, ResNetDepth
from .models.fan import FAN
from .models.hourglass import HourGlass, pool2x

__all__ = ["optimize_for_inference", "FastFAN", "CompiledFAN", "FoldedPreActConv",
           "FusedHierarchicalBlock", "OneDnnConv2d", "fold_conv_bn", "compiler_unavailable_reason"]


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference-time BN as ``s * x + t`` (float64 for an accurate fold)."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    s = weight / torch.sqrt(var + bn.eps)
    return s, bias - mean * s


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution (exact up to rounding)."""
    s, t = _bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True)
    weight = conv.weight.detach().double() * s.view(-1, 1, 1, 1)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(s)
    fused.weight.data.copy_(weight.to(conv.weight.dtype))
    fused.bias.data.copy_((bias * s + t).to(conv.weight.dtype))
    return fused.to(conv.weight.device)


def _onednn_pointwise():
    """oneDNN's convolution with a fused post-op (the operator inductor emits), or None in a torch
    build without oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


class OneDnnConv2d(nn.Module):
    """A real convolution, optionally followed by ReLU, for CPU inference on channels-last tensors,
    sent to oneDNN directly with the ReLU as a post-op of the same pass.

    Why not ``F.conv2d``: PyTorch routes 1x1 convolutions at batch < 16 on one thread to its im2col
    path ("slow_conv2d"), and the ReLU is then a second pass over the output. Elsewhere (CUDA, a
    torch without oneDNN, other dtypes) it is ``F.conv2d`` + ReLU, the same function."""

    def __init__(self, conv: nn.Conv2d, relu: bool = False):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"OneDnnConv2d needs numeric zero padding, got {conv}")
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", conv.bias.detach().clone() if conv.bias is not None else None)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.relu = bool(relu)
        self._pointwise = _onednn_pointwise()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pointwise is not None and x.device.type == "cpu" and x.dtype == torch.float32 \
                and not torch.is_grad_enabled():
            return self._pointwise(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                   self.groups, "relu" if self.relu else "none", [], "")
        out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return torch.relu_(out) if self.relu else out

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size={tuple(self.weight.shape[2:])}, " \
               f"stride={tuple(self.stride)}, relu={self.relu}"


class FoldedPreActConv(nn.Module):
    """``conv(relu(bn(x)))`` computed as ``conv'(clamp(x, lo, hi)) + border`` (module docstring,
    item 2). Works for any stride-1, zero-padded, bias-free convolution."""

    def __init__(self, bn: nn.BatchNorm2d, conv: nn.Conv2d):
        super().__init__()
        if conv.stride not in ((1, 1), 1) or conv.groups != 1 or conv.dilation not in ((1, 1), 1):
            raise ValueError("FoldedPreActConv needs a stride-1, ungrouped, undilated convolution")
        s, t = _bn_affine(bn)
        zero = s == 0
        threshold = torch.where(zero, torch.zeros_like(t), -t / torch.where(zero, torch.ones_like(s), s))
        lo = torch.where(s > 0, threshold, torch.full_like(s, -torch.inf))
        hi = torch.where(s < 0, threshold, torch.full_like(s, torch.inf))
        constant = torch.where(zero, torch.relu(t), t)
        weight = conv.weight.detach().double()
        dtype = conv.weight.dtype
        self.padding = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 2
        self.register_buffer("weight", (weight * s.view(1, -1, 1, 1)).to(dtype).contiguous(
            memory_format=torch.channels_last))
        bias = weight.sum(dim=(2, 3)) @ constant
        if conv.bias is not None:
            bias = bias + conv.bias.detach().double()
        self.register_buffer("bias", bias.to(dtype))
        self.register_buffer("lo", lo.to(dtype).view(1, -1, 1, 1))
        self.register_buffer("hi", hi.to(dtype).view(1, -1, 1, 1))
        self.two_sided = bool((s < 0).any())
        # For the border correction: the original weight and the constant input.
        self.register_buffer("_weight64", weight, persistent=False)
        self.register_buffer("_constant64", constant, persistent=False)
        self._border: dict[tuple, torch.Tensor] = {}
        self.has_border = any(p > 0 for p in self.padding) and bool((constant != 0).any())

    def _border_map(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        key = (height, width, like.device, like.dtype)
        if key not in self._border:
            py, px = self.padding
            # A pixel's correction only depends on which kernel taps fall into the padding, i.e.
            # on its distance to each edge (up to the padding): compute it on a (2p+1)^2 image and
            # expand, instead of a float64 convolution at full size.
            small_h, small_w = min(height, 2 * py + 1), min(width, 2 * px + 1)
            ones = self._constant64.view(1, -1, 1, 1).expand(1, -1, small_h, small_w)
            small = F.conv2d(ones, self._weight64, padding=self.padding)
            interior = (self._weight64.sum(dim=(2, 3)) @ self._constant64).view(1, -1, 1, 1)
            small = small - interior

            def index(size: int, pad: int, small_size: int) -> torch.Tensor:
                if size == small_size:
                    return torch.arange(size)
                middle = torch.full((size - 2 * pad,), pad, dtype=torch.long)
                return torch.cat([torch.arange(pad), middle, torch.arange(pad + 1, 2 * pad + 1)])

            full = small[:, :, index(height, py, small_h)][:, :, :, index(width, px, small_w)]
            self._border[key] = full.to(like.dtype).contiguous()
        return self._border[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(x, self.lo, self.hi) if self.two_sided else torch.maximum(x, self.lo)
        out = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        if self.has_border:
            border = self._border_map(x.shape[-2], x.shape[-1], out)
            py, px = self.padding
            if out.shape[-2] * out.shape[-1] <= 256 or out.shape[-2] <= 2 * py or out.shape[-1] <= 2 * px:
                out += border
            else:
                out[..., :py, :] += border[..., :py, :]
                out[..., -py:, :] += border[..., -py:, :]
                out[..., py:-py, :px] += border[..., py:-py, :px]
                out[..., py:-py, -px:] += border[..., py:-py, -px:]
        return out


class FusedHierarchicalBlock(nn.Module):
    """The hierarchical block (thesis Fig. 5.3e; the official ``ConvBlock``) with folded
    pre-activations and the residual added while writing the concatenation."""

    def __init__(self, block: HierarchicalBlock):
        super().__init__()
        self.units = nn.ModuleList(
            FoldedPreActConv(getattr(block, f"bn{i}"), getattr(block, f"conv{i}"))
            for i in range(1, block.depth + 1))
        self.widths = [unit.weight.shape[0] for unit in self.units]
        self.out_channels = block.out_channels
        self.shortcut = block.shortcut
        self.downsample = None
        if block.shortcut == "project":
            self.downsample = FoldedPreActConv(block.downsample[0], block.downsample[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut == "project":
            residual = self.downsample(x)
        elif self.shortcut == "fold":
            residual = x[:, :self.out_channels] + x[:, self.out_channels:]
        else:
            residual = x
        out = torch.empty_like(residual, memory_format=torch.channels_last)
        start, h = 0, x
        for unit, width in zip(self.units, self.widths):
            h = unit(h)
            torch.add(residual[:, start:start + width], h, out=out[:, start:start + width])
            start += width
        return out


def _fusable(block: nn.Module) -> bool:
    return (isinstance(block, HierarchicalBlock) and block.branches is None
            and not block.relu_after and all(
                type(getattr(block, f"conv{i}")) is nn.Conv2d for i in range(1, block.depth + 1))
            and (block.downsample is None or type(block.downsample[2]) is nn.Conv2d))


def _replace_blocks(module: nn.Module) -> None:
    for name, child in module.named_children():
        if _fusable(child):
            setattr(module, name, FusedHierarchicalBlock(child))
        else:
            _replace_blocks(child)


class _FastHourGlass(HourGlass):
    """:class:`~fa_lib.models.hourglass.HourGlass` (the same modules) without the per-call input
    checks, adding its branches in place (inference only)."""

    add_in_place = True

    def __init__(self, hourglass: HourGlass):
        nn.Module.__init__(self)
        self.depth, self.features, self.pooling = hourglass.depth, hourglass.features, hourglass.pooling
        self.out_channels = hourglass.out_channels
        for name, child in hourglass.named_children():
            self.add_module(name, child)

    def forward(self, x):
        return self._forward(self.depth, x)

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(pool2x(x, self.pooling))
        low = self._forward(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        # nearest 2x upsampling + add as one broadcasting pass (no upsampled copy of ``low``)
        n, c, h, w = up1.shape
        up1.view(n, c, h // 2, 2, w // 2, 2).add_(low.view(n, c, h // 2, 1, w // 2, 1))
        return up1


class FastFAN(nn.Module):
    """An inference-only FAN equivalent to the one it was built from (see the module docstring).

    Same input and output as :class:`~fa_lib.models.fan.FAN`: (B, C, H, W) -> list of per-stack
    heatmaps, contiguous NCHW float tensors.
    """

    def __init__(self, fan: FAN):
        super().__init__()
        fan = copy.deepcopy(fan).eval()
        self.config = dict(fan.config)
        self.num_modules, self.pooling, self.in_channels = fan.num_modules, fan.pooling, fan.in_channels
        # conv -> BN -> ReLU of the stem and the heads: one oneDNN pass each (BN folded, ReLU a post-op)
        self.conv1 = OneDnnConv2d(fold_conv_bn(fan.conv1, fan.bn1), relu=True)
        self.conv2, self.conv3, self.conv4 = fan.conv2, fan.conv3, fan.conv4
        for i in range(fan.num_modules):
            hourglass = getattr(fan, f"m{i}")
            self.add_module(f"m{i}", _FastHourGlass(hourglass) if type(hourglass) is HourGlass
                            else hourglass)
            self.add_module(f"top_m_{i}", getattr(fan, f"top_m_{i}"))
            self.add_module(f"conv_last{i}", OneDnnConv2d(fold_conv_bn(getattr(fan, f"conv_last{i}"),
                                                                       getattr(fan, f"bn_end{i}")), relu=True))
            self.add_module(f"l{i}", OneDnnConv2d(getattr(fan, f"l{i}")))
            if i < fan.num_modules - 1:
                self.add_module(f"bl{i}", OneDnnConv2d(getattr(fan, f"bl{i}")))
                self.add_module(f"al{i}", OneDnnConv2d(getattr(fan, f"al{i}")))
        _replace_blocks(self)
        self.to(memory_format=torch.channels_last)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def direct_block_edges(self) -> list[tuple[str, str]]:
        """The (producer, consumer) module names whose output :meth:`forward` hands to the other unchanged,
        besides the hourglasses' own: the stem's ``conv3`` -> ``conv4`` -> the first hourglass's first module."""
        first = getattr(self, "m0")
        return [("conv3", "conv4")] + ([("conv4", f"m0.b1_{first.depth}")] if isinstance(first, HourGlass) else [])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FAN expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        with torch.inference_mode():
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x)
            x = pool2x(self.conv2(x), self.pooling)
            previous = self.conv4(self.conv3(x))
            outputs = []
            for i in range(self.num_modules):
                ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
                ll = getattr(self, f"conv_last{i}")(ll)
                heatmaps = getattr(self, f"l{i}")(ll)
                outputs.append(heatmaps)
                if i < self.num_modules - 1:
                    previous = previous + getattr(self, f"bl{i}")(ll)
                    previous += getattr(self, f"al{i}")(heatmaps)
            return [h.contiguous() for h in outputs]


def _fold_depth(depth: ResNetDepth) -> ResNetDepth:
    depth = copy.deepcopy(depth).eval()
    depth.conv1 = fold_conv_bn(depth.conv1, depth.bn1)
    depth.bn1 = nn.Identity()
    for module in depth.modules():
        if isinstance(module, DepthBottleneck):
            for i in (1, 2, 3):
                setattr(module, f"conv{i}", fold_conv_bn(getattr(module, f"conv{i}"),
                                                         getattr(module, f"bn{i}")))
                setattr(module, f"bn{i}", nn.Identity())
            if module.downsample is not None:
                module.downsample = nn.Sequential(fold_conv_bn(module.downsample[0],
                                                               module.downsample[1]))
    return depth.to(memory_format=torch.channels_last)


def compiler_unavailable_reason() -> str | None:
    """Why ``torch.compile``'s CPU backend cannot run here (None when it can): inductor needs
    TorchDynamo support for this Python/platform and a working C++ compiler for its kernels."""
    try:
        import torch._dynamo
        from torch._inductor import cpp_builder
    except Exception as err:  # a torch build without the compiler stack
        return f"torch.compile is not importable ({type(err).__name__}: {err})"
    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo (torch.compile) does not support this Python version or platform"
    try:
        cpp_builder.get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler: no g++/clang++ (or $CXX) that works
        return f"no C++ compiler for torch.compile's inductor backend ({type(err).__name__}: {err})"
    return None


class CompiledFAN(nn.Module):
    """FAN compiled for CPU inference by ``torch.compile`` (inductor, freezing, channels-last); see
    the module docstring, "Compiled mode". Same input and output as :class:`FastFAN`.

    The compilation happens on the first call for each input shape (``dynamic=False``: every
    shape gets its own specialised kernels; the weights are frozen into the compiled graph, so
    each instance compiles its own, and after TorchDynamo's recompile limit, 8 by default, further
    instances of the same architecture in one process run uncompiled, with a TorchDynamo warning). When the compiler is unavailable, or inductor fails
    to build its kernels, it warns once and runs the eager :class:`FastFAN` instead;
    ``fallback_reason`` then says why (None while compiled)."""

    def __init__(self, fan: FAN, mode: str | None = None):
        super().__init__()
        with torch.inference_mode(False):  # freezing cannot take inference tensors as weights
            network = copy.deepcopy(fan).eval().to(memory_format=torch.channels_last)
        for p in network.parameters():
            p.requires_grad_(False)
        self.network = network
        self.config = dict(getattr(fan, "config", {}))
        self.in_channels = fan.in_channels
        self.mode = mode
        self.fallback_reason = compiler_unavailable_reason()
        self._fast = FastFAN(fan)  # the eager fallback (cheap to build: weight folding only)
        # Kept out of the module tree: an OptimizedModule would register ``network`` a second time.
        self.__dict__["_compiled"] = None
        if self.fallback_reason is None:
            self.__dict__["_compiled"] = torch.compile(network, mode=mode, dynamic=False)
        else:
            warnings.warn(f"CompiledFAN runs the eager FastFAN: {self.fallback_reason}", stacklevel=2)

    @property
    def compiled(self) -> bool:
        """Whether forward runs the compiled network (False after a fallback)."""
        return self.fallback_reason is None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FAN expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.fallback_reason is None:
            from torch._dynamo.exc import BackendCompilerFailed
            from torch._inductor import config as inductor_config

            try:
                # Compilation is lazy (first call per input shape), so freezing is switched on
                # around every call, and only there: other torch.compile users in the process
                # keep their settings. (``torch.compile(options={"freezing": True})`` was
                # measured not to freeze: no weight prepacking, ~8 % slower.) Freezing applies
                # only to graphs compiled without autograd, hence inference mode.
                with torch.inference_mode(), inductor_config.patch(freezing=True):
                    outputs = self._compiled(x.contiguous(memory_format=torch.channels_last))
                return [h.contiguous() for h in outputs]
            except BackendCompilerFailed as err:  # e.g. the C++ build of inductor's kernels failed
                inner = getattr(err, "inner_exception", None) or err
                first_line = (str(inner).strip().splitlines() or [""])[0]
                self.fallback_reason = f"inductor failed to compile ({type(inner).__name__}: " \
                                       f"{first_line})"
                warnings.warn(f"CompiledFAN runs the eager FastFAN: {self.fallback_reason}",
                              stacklevel=2)
        return self._fast(x)


def optimize_for_inference(model: nn.Module, compile: bool = False) -> nn.Module:
    """An inference-only equivalent of ``model`` (FAN, FanFull, ResNetDepth; anything else is
    returned in eval mode unchanged). The original model is not modified.

    ``compile=True`` returns the FAN (also inside a FanFull) as a :class:`CompiledFAN`
    (``torch.compile``; falls back to :class:`FastFAN` when no compiler is available)."""
    if isinstance(model, FAN):
        return CompiledFAN(model) if compile else FastFAN(model)
    if isinstance(model, FanFull):
        fan = CompiledFAN(model.fan) if compile else FastFAN(model.fan)
        return FanFull(fan, _fold_depth(model.depth), model.depth_sigma).eval()
    if isinstance(model, ResNetDepth):
        return _fold_depth(model)
    return model.eval()
