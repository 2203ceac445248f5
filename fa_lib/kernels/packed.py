"""Packed (bit-packed, XNOR/popcount) inference for the binary networks of chapter 5.

:func:`pack_model` turns a trained network built from :mod:`fa_lib.models.binary` layers into an inference
module whose binary convolutions run through the C kernels of :mod:`fa_lib.kernels.xnor` while every real
layer (stem, heads, pooling, upsampling, residual adds) stays in PyTorch:

* each binary ``PreActConv`` (BN -> sign -> ``BinaryConv2d``) becomes one :class:`PackedBinaryConv`:
  BN + sign are folded into per-channel thresholds applied while packing (one pass over the input),
  the convolution is XNOR + popcount (eq. 5.1) with ``alpha`` of eq. 5.2;
* a lone ``BinaryConv2d`` (sign of its raw input) becomes a :class:`PackedBinaryConv` with plain sign
  thresholds;
* the hierarchical, parallel & multi-scale block (thesis Fig. 5.1b) becomes a :class:`PackedHierarchicalBlock`
  whose three convolutions write straight into channel slices of one output tensor (the concatenation
  costs nothing); each convolution's epilogue also packs the next layer's input and adds the shortcut.
  Optionally (``pack_model(..., cross_block_packing=True)``), when the block's output goes straight into
  another packed block (learned on a first call, where the second block receives the very tensor the first
  returned, unchanged; or declared by the code that wires them, :func:`link_blocks`), the epilogues storing
  the block's output also pack it under the second block's thresholds, and that block skips its packing pass.

Activations between layers are float32 NCHW tensors in ``torch.channels_last`` storage.  The integer
popcounts equal the training-time forward bit for bit, and so do the outputs when the real layers see the
same inputs in the same layout as the float forward they are compared with: by default they run
channels-last (equal to the float network run in channels-last memory); ``pack_model(...,
real_layers="nchw")`` runs them on NCHW copies (equal to the training-time forward itself).
"""
from __future__ import annotations

import copy
import importlib
import io
import threading
import weakref
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from fa_lib.inference import FastFAN
from fa_lib.models.binary import BinaryConv2d, PreActConv
from fa_lib.models.blocks import HierarchicalBlock
from fa_lib.models.fan import FAN

from . import fileformat, xnor


class PackedBinaryConv(nn.Module):
    """Inference form of BN -> sign -> binary conv (eq. 5.1-5.2), stride 1, "same" zero padding.

    ``lo``/``hi`` are the folded BN + sign thresholds (:func:`fa_lib.kernels.xnor.sign_thresholds`),
    ``relu_after`` applies the optional ReLU after the convolution (thesis Table 5.9)."""

    def __init__(self, weights: xnor.PackedWeights, lo: torch.Tensor, hi: torch.Tensor,
                 relu_after: bool = False, isa: Optional[str] = None, threads: Optional[int] = None):
        super().__init__()
        if lo.shape != (weights.in_channels,) or hi.shape != (weights.in_channels,):
            raise ValueError(f"thresholds must have shape ({weights.in_channels},)")
        self.weights = weights
        self.lo = lo.detach().float().contiguous()
        self.hi = hi.detach().float().contiguous()
        self.relu_after = bool(relu_after)
        self.isa = isa
        self.threads = threads

    @property
    def in_channels(self) -> int:
        return self.weights.in_channels

    @property
    def out_channels(self) -> int:
        return self.weights.out_channels

    @property
    def kernel_size(self) -> int:
        return self.weights.kernel_size

    @classmethod
    def from_conv(cls, conv: nn.Module, bn: Optional[nn.BatchNorm2d] = None, relu_after: bool = False,
                  **kwargs) -> "PackedBinaryConv":
        """Packs a ``BinaryConv2d`` (alpha from its own ``scale()``) preceded by ``bn`` (or a plain sign)."""
        _check_supported_conv(conv)
        weights = xnor.PackedWeights(xnor.pack_weight_bits(conv.weight), conv.scale().detach(),
                                     conv.in_channels, conv.kernel_size[0])
        lo, hi = xnor.sign_thresholds(bn, conv.in_channels)
        return cls(weights, lo, hi, relu_after=relu_after, **kwargs)

    @classmethod
    def from_preact(cls, unit: nn.Module, **kwargs) -> "PackedBinaryConv":
        """Packs a binary ``PreActConv`` (submodules ``bn``, ``act`` = Identity, ``conv``)."""
        if not isinstance(unit.act, nn.Identity):
            raise ValueError(f"binary PreActConv expected an Identity activation before the sign, got "
                             f"{type(unit.act).__name__}")
        return cls.from_conv(unit.conv, unit.bn, relu_after=unit.relu_after, **kwargs)

    def forward(self, x: torch.Tensor, out: Optional[torch.Tensor] = None, out_channel_offset: int = 0):
        """``x``: (N, Cin, H, W) float (any layout); returns (or fills the slice of) a channels-last tensor."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        packed = xnor.pack_activations(x, self.lo, self.hi, pad=(self.kernel_size - 1) // 2,
                                       isa=self.isa, threads=self.threads)
        return xnor.binary_conv(packed, self.weights, out=out, out_channel_offset=out_channel_offset,
                                isa=self.isa, threads=self.threads, relu=self.relu_after)

    def integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The popcount-derived integer dot products (before alpha), for exactness checks."""
        packed = xnor.pack_activations(x, self.lo, self.hi, pad=(self.kernel_size - 1) // 2,
                                       isa=self.isa, threads=self.threads)
        return xnor.binary_conv(packed, self.weights, scale=False, isa=self.isa, threads=self.threads)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"relu_after={self.relu_after}")


def _check_supported_conv(conv: nn.Module) -> None:
    k = conv.kernel_size
    if (k[0] != k[1] or k[0] % 2 == 0 or tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1)
            or conv.groups != 1 or tuple(conv.padding) != (k[0] // 2, k[0] // 2)):
        raise ValueError(f"packed kernels support square odd kernels, stride 1, dilation 1, groups 1 and "
                         f"'same' zero padding; got {conv}")


def _is_binary_preact(module: nn.Module) -> bool:
    return isinstance(module, PreActConv) and module.binary


def _is_binary_conv(module: nn.Module) -> bool:
    return isinstance(module, BinaryConv2d)


def _pack_children(module: nn.Module, **kwargs) -> None:
    """Replaces binary units in place, depth first (block-level converters first, see pack_model)."""
    for name, child in list(module.named_children()):
        replacement = None
        for matches, convert in _BLOCK_CONVERTERS:
            if matches(child):
                replacement = convert(child, **kwargs)
                break
        if replacement is None and _is_binary_preact(child):
            replacement = PackedBinaryConv.from_preact(child, **kwargs)
        if replacement is None and _is_binary_conv(child):
            replacement = PackedBinaryConv.from_conv(child, None, **kwargs)
        if replacement is not None:
            setattr(module, name, replacement)
        else:
            _pack_children(child, **kwargs)


class PackedHierarchicalBlock(nn.Module):
    """Packed hierarchical, parallel & multi-scale block (thesis Fig. 5.1b / 5.3e, any depth/cardinality).

    Each path's 3x3 layers read the previous layer's output slice and write their own slice of one
    channels-last output tensor, so the concatenation is free; then the shortcut (identity, fold of the
    two input halves, or a packed 1x1 projection) is added in place."""

    def __init__(self, chains: list[list[PackedBinaryConv]], out_channels: int, shortcut: str,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.chains = nn.ModuleList(nn.ModuleList(chain) for chain in chains)
        self.in_channels = chains[0][0].in_channels
        self.out_channels = out_channels
        self.shortcut = shortcut
        self.downsample = downsample
        if sum(conv.out_channels for chain in chains for conv in chain) != out_channels:
            raise ValueError("the hierarchical layers' widths do not add up to the block's output channels")
        self._successor: Optional[weakref.ref] = None  # the packed block that reads this one's output directly
        self._declared = False  # whether that edge was declared by the wiring code (link_blocks)
        self.cross_block = False  # pack the output for that block (set_cross_block_packing)

    @classmethod
    def from_block(cls, block: nn.Module, **kwargs) -> "PackedHierarchicalBlock":
        owners = [block] if block.branches is None else list(block.branches)
        if not all(isinstance(owner.act, nn.Identity) for owner in owners):
            raise ValueError("binary hierarchical block expected Identity activations before the sign")
        chains = [[PackedBinaryConv.from_conv(getattr(owner, f"conv{i}"), getattr(owner, f"bn{i}"),
                                              relu_after=block.relu_after, **kwargs)
                   for i in range(1, block.depth + 1)] for owner in owners]
        downsample = None
        if block.shortcut == "project":
            downsample = _pack_projection(block.downsample, **kwargs)
        return cls(chains, block.out_channels, block.shortcut, downsample)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_successor"], state["_declared"] = None, False  # a copy learns its own (a weak reference cannot be pickled)
        return state

    @property
    def chain_pack(self) -> int:
        """Index of the first path's threshold set among the program's packs (the projection's comes first)."""
        return 1 if isinstance(self.downsample, PackedBinaryConv) else 0

    def _existing_program(self, n: int, h: int, w: int) -> Optional[xnor.BlockProgram]:
        cached = _BLOCK_PROGRAMS.get(self, {}).get(threading.get_ident())
        return cached[2] if cached is not None and cached[0][:3] == (n, h, w) else None

    def _successor_program(self, n: int, h: int, w: int) -> Optional[xnor.BlockProgram]:
        """The program of the block this one feeds (learned at run time), when it can be packed for."""
        successor = self._successor() if self._successor is not None and self.cross_block else None
        if successor is None:
            return None
        program = successor._existing_program(n, h, w)
        return program if program is not None and program.isa == xnor.resolve_isa(self.chains[0][0].isa) else None

    def _program(self, n: int, h: int, w: int) -> xnor.BlockProgram:
        """The block's native program for this input size and the calling thread (built once: it owns the
        packed intermediate buffers), rebuilt if a layer's weights or thresholds were replaced or the block it
        packs its output for changed."""
        first = self.chains[0][0]
        convs = [conv for chain in self.chains for conv in chain]
        if isinstance(self.downsample, PackedBinaryConv):
            convs.append(self.downsample)
        key = (n, h, w, xnor.resolve_isa(first.isa))
        successor = self._successor_program(n, h, w)
        # the layers' current objects, compared by identity (the cache holds them, so an id is never reused)
        parts = tuple(part for c in convs for part in (c.weights, c.lo, c.hi)) + (successor,)
        programs = _BLOCK_PROGRAMS.setdefault(self, {})
        thread = threading.get_ident()
        cached = programs.get(thread)
        program = None
        if cached is not None and cached[0] == key and len(cached[1]) == len(parts) and \
                all(a is b for a, b in zip(cached[1], parts)):
            program = cached[2]
        if program is None:
            packs, steps = [], []
            if isinstance(self.downsample, PackedBinaryConv):  # written first, then accumulated into
                ds = self.downsample
                packs.append((ds.lo, ds.hi, (ds.kernel_size - 1) // 2))
                steps.append(xnor.ConvStep(ds.weights, ("pack", 0), 0, relu=ds.relu_after, residual=None))
            residual = "out" if self.shortcut == "project" else "shortcut"
            offset = 0
            for chain in self.chains:
                packs.append((chain[0].lo, chain[0].hi, (chain[0].kernel_size - 1) // 2))
                for i, conv in enumerate(chain):
                    source = ("pack", len(packs) - 1) if i == 0 else ("conv", len(steps) - 1)
                    steps.append(xnor.ConvStep(conv.weights, source, offset, relu=conv.relu_after, residual=residual,
                                               lo=conv.lo if i else None, hi=conv.hi if i else None))
                    offset += conv.out_channels
            final = None
            if successor is not None and xnor.BlockProgram.final_capable(steps, first.isa):
                reader = self._successor().chains[0][0]
                final = (reader.lo, reader.hi, successor.pack_buffers[self._successor().chain_pack])
            program = xnor.BlockProgram(n, h, w, self.in_channels, packs, steps, isa=first.isa, final=final)
            programs[thread] = (key, parts, program)  # one size per thread (the network's; a new one replaces it)
        return program

    def _prepacked(self, x: torch.Tensor, program: xnor.BlockProgram) -> tuple[int, ...]:
        """Which of the program's threshold sets the block that produced ``x`` packed already. ``x`` must be
        that block's latest output, and unchanged: checked by its version counter, or, for inference
        tensors (which have none), only along an edge declared by the code that wires the two blocks
        (:func:`link_blocks`). A block receiving another's output unchanged for the first time (version
        checked) becomes its successor: from its next call on, the producer packs its output for it."""
        outputs, emitted = _thread_state()
        entry = outputs.get(id(x))
        if not self.cross_block or entry is None or entry[0]() is not x:
            return ()
        producer, version = entry[1](), _version(x)
        if producer is None:
            return ()
        linked = producer._successor is not None and producer._successor() is self
        if version is None:
            if not (linked and producer._declared):
                return ()
        elif version != entry[2]:
            return ()  # changed in place since the producer wrote it
        elif not linked and not producer._declared and producer.out_channels == self.in_channels:
            producer._successor = weakref.ref(self)
        done = emitted.pop(id(program), None)
        if done is not None and done[0]() is program and done[1]() is x and done[2] == version:
            return (self.chain_pack,)
        return ()

    def _remember_output(self, out: torch.Tensor, program: xnor.BlockProgram) -> None:
        outputs, emitted = _thread_state()
        if len(outputs) > 64:  # only the latest outputs can still be a block's input
            for key in [k for k, v in outputs.items() if v[0]() is None]:
                del outputs[key]
        outputs[id(out)] = (weakref.ref(out), weakref.ref(self), _version(out))
        if program.final is not None:
            n, _, h, w = program.shape
            successor = self._successor_program(n, h, w)
            if successor is not None:
                emitted[id(successor)] = (weakref.ref(successor), weakref.ref(out), _version(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"block expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = xnor.to_channels_last(x)
        n, _, h, w = x.shape
        out = torch.empty((n, self.out_channels, h, w), dtype=torch.float32, memory_format=torch.channels_last)
        # The shortcut is added inside each convolution's epilogue, after that output's sign bits for the
        # next layer were taken (the next layer sees the pre-shortcut value, as in the float block).
        shortcut = None
        if self.shortcut == "project" and not isinstance(self.downsample, PackedBinaryConv):
            out.copy_(self.downsample(x))  # a real projection: the convolutions accumulate into it
        elif self.shortcut == "fold":
            half = self.out_channels
            shortcut = xnor.to_channels_last(x[:, :half] + x[:, half:])
        elif self.shortcut != "project":
            shortcut = x
        program = self._program(n, h, w)
        program.run(x, out, shortcut, threads=self.chains[0][0].threads, prepacked=self._prepacked(x, program))
        self._remember_output(out, program)
        return out


#: per block, its native programs (one per calling thread and input size); weakly keyed so that a
#: copied or deleted module never shares or keeps another's buffers
_BLOCK_PROGRAMS: "weakref.WeakKeyDictionary[PackedHierarchicalBlock, dict]" = weakref.WeakKeyDictionary()
_THREAD = threading.local()


def _thread_state() -> tuple[dict, dict]:
    """This thread's latest block outputs (id -> (tensor ref, block ref, version)) and the packings done
    for a block's next input (id of its program -> (program ref, tensor ref, version))."""
    state = getattr(_THREAD, "state", None)
    if state is None:
        state = _THREAD.state = ({}, {})
    return state


def _version(tensor: torch.Tensor) -> Optional[int]:
    """The tensor's in-place version counter (None for inference tensors, which have none)."""
    return None if tensor.is_inference() else tensor._version


def link_blocks(producer: nn.Module, consumer: nn.Module) -> bool:
    """Declares that ``consumer`` reads ``producer``'s output as it is (nothing changes it in between), so that
    the producer packs its output for the consumer even under ``torch.inference_mode`` (whose tensors have no
    version counter to check that by). True when both are packed hierarchical blocks that fit."""
    if not (isinstance(producer, PackedHierarchicalBlock) and isinstance(consumer, PackedHierarchicalBlock)) or \
            producer.out_channels != consumer.in_channels:
        return False
    producer._successor, producer._declared = weakref.ref(consumer), True
    return True


def link_declared_blocks(model: nn.Module) -> int:
    """:func:`link_blocks` along the ``direct_block_edges()`` that modules of ``model`` declare about their own
    forward (:meth:`fa_lib.models.hourglass.HourGlass.direct_block_edges`,
    :meth:`fa_lib.inference.FastFAN.direct_block_edges`); returns how many edges were linked."""
    linked = 0
    for module in model.modules():
        if callable(getattr(module, "direct_block_edges", None)):
            linked += sum(link_blocks(module.get_submodule(a), module.get_submodule(b))
                          for a, b in module.direct_block_edges())
    return linked


def set_cross_block_packing(model: nn.Module, on: bool) -> int:
    """Whether the packed blocks of ``model`` pack their output for the block they feed, in the epilogues of
    the convolutions that store it, so that block skips its packing pass (the outputs are the same either
    way; off by default, see :func:`pack_model`). Returns how many blocks were set."""
    blocks = [m for m in model.modules() if isinstance(m, PackedHierarchicalBlock)]
    for block in blocks:
        block.cross_block = bool(on)
    return len(blocks)


def _is_binary_hierarchical(module: nn.Module) -> bool:
    if not isinstance(module, HierarchicalBlock):
        return False
    owners = [module] if module.branches is None else list(module.branches)
    return all(_is_binary_conv(getattr(owner, f"conv{i}")) for owner in owners for i in range(1, module.depth + 1))


def _is_binary_projection(module: nn.Module) -> bool:
    """``Sequential(BatchNorm2d, Identity, BinaryConv2d)``: the binary projection shortcut of the blocks."""
    return (isinstance(module, nn.Sequential) and len(module) == 3 and isinstance(module[0], nn.BatchNorm2d)
            and isinstance(module[1], nn.Identity) and _is_binary_conv(module[2]))


def _pack_projection(module: nn.Module, **kwargs) -> nn.Module:
    if _is_binary_projection(module):
        return PackedBinaryConv.from_conv(module[2], module[0], **kwargs)
    return module  # a real projection stays in PyTorch


# (predicate, converter) pairs for modules that get a dedicated packed implementation.
_BLOCK_CONVERTERS: list = [
    (_is_binary_hierarchical, PackedHierarchicalBlock.from_block),
    (_is_binary_projection, _pack_projection),
]


REAL_LAYER_LAYOUTS = ("channels_last", "nchw", "fast")


def pack_model(model: nn.Module, isa: Optional[str] = None, threads: Optional[int] = None,
               real_layers: str = "channels_last", cross_block_packing: bool = False) -> nn.Module:
    """A packed-inference copy of ``model`` (which is left untouched); needs ``model.eval()`` first.

    Every binary layer is replaced; real layers are kept.  ``real_layers`` is the memory layout in which
    the real convolutions and batch norms run:

    * ``"channels_last"`` (default, fastest): the layout the kernels read and write, no conversions.  The
      outputs then equal, bit for bit, those of the float ``model`` run in channels-last memory
      (``model.to(memory_format=torch.channels_last)`` on channels-last images);
    * ``"nchw"``: each real Conv2d / BatchNorm2d gets its input as a contiguous NCHW tensor, as in the
      training-time forward, so the outputs equal those of ``model`` itself bit for bit, at the cost of a
      layout copy around every real layer.

    * ``"fast"`` (FAN networks only): the real layers rewritten for speed as :class:`fa_lib.inference.FastFAN`
      does for float FANs: the stem's and heads' batch norms folded into their convolutions, each real
      convolution and its ReLU one oneDNN pass, the hourglass's upsample-and-add one pass.  The real
      layers then agree with the float model to float rounding (not bit for bit), so a sign taken within
      rounding of its threshold can flip and propagate (chapter 5's ``table 5.packed_inference`` counts the
      landmarks that move on its trained networks); the binary layers are exact as in the other modes.

    The first two differ because PyTorch's float convolutions sum in another order in the two layouts: the
    last bit of an activation can change, and a sign taken exactly at a threshold then flips (the binary
    layers themselves are exact in both).  ``cross_block_packing``: a block whose output goes straight into
    another block packs it for that block in its convolutions' epilogues (:func:`set_cross_block_packing`;
    the same outputs; off by default: on the machines measured it costs the producer more than the
    consumer's packing pass it saves, see ``fa-lib bench xnor``).  Raises ValueError if a binary convolution cannot be packed
    (stride != 1, ...), for an unknown ``real_layers``, or for ``"fast"`` on a model that is not a FAN."""
    if model.training:
        raise ValueError("pack_model needs a model in eval mode (BatchNorm running statistics); call model.eval()")
    if real_layers not in REAL_LAYER_LAYOUTS:
        raise ValueError(f"real_layers must be one of {REAL_LAYER_LAYOUTS}, got {real_layers!r}")
    if real_layers == "fast" and not isinstance(model, FAN):
        raise ValueError(f"real_layers='fast' rewrites the real layers of FAN networks "
                         f"(fa_lib.models.fan.FAN); got {type(model).__name__}: use 'channels_last'")
    wrapper = nn.Sequential(copy.deepcopy(model))  # so that the model itself can be replaced too
    _pack_children(wrapper, isa=isa, threads=threads)
    packed = wrapper[0].eval()
    set_cross_block_packing(packed, cross_block_packing)
    if real_layers == "fast":
        return _fast_real_layers(packed)
    if real_layers == "channels_last":
        # Feed the network channels-last images: the real stem then hands the first binary block the layout
        # the kernels read, instead of a full-resolution NCHW -> NHWC copy.
        packed.register_forward_pre_hook(_images_to_channels_last)
    else:
        for module in packed.modules():
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):  # binary convs are gone: these are real
                module.register_forward_pre_hook(_inputs_to_nchw)
    packed.real_layers = real_layers
    return packed


def _fast_real_layers(packed: FAN) -> nn.Module:
    """A packed FAN (exact real layers) with its real layers rewritten as ``FastFAN`` does (see
    :func:`pack_model`, ``real_layers="fast"``)."""
    fast = FastFAN(packed)
    fast.real_layers = "fast"
    link_declared_blocks(fast)  # it runs under inference_mode: only declared edges pack across blocks
    return fast


def _images_to_channels_last(module: nn.Module, args: tuple):
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


def _inputs_to_nchw(module: nn.Module, args: tuple):
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


# ---------------------------------------------------------------------------------------------------
# Saving and loading (file format: fa_lib.kernels.fileformat)
# ---------------------------------------------------------------------------------------------------


def _negative_signs(weights: xnor.PackedWeights) -> np.ndarray:
    """Boolean "is negative" array (Cout, Cin, k, k) from the kernel words."""
    cout, kk, cw = weights.bits.shape
    k, cin = weights.kernel_size, weights.in_channels
    bits = np.unpackbits(weights.bits.numpy().view(np.uint8).reshape(cout, kk, cw * 8), axis=-1,
                         bitorder="little")[..., :cin].astype(bool)
    return bits.reshape(cout, k, k, cin).transpose(0, 3, 1, 2)


def _weights_from_signs(negative: np.ndarray, alpha: torch.Tensor) -> xnor.PackedWeights:
    cout, cin, k, _ = negative.shape
    words = xnor.pack_weight_bits(torch.from_numpy(np.where(negative, -1.0, 1.0).astype(np.float32)))
    return xnor.PackedWeights(words, alpha.float(), cin, k)


def save_packed(packed: nn.Module, path, config: Optional[dict] = None) -> int:
    """Writes a packed network: binary convs as 1-bit signs + alpha + folded BN thresholds (2 floats per
    input channel instead of BN's 4), every real parameter/buffer as float32 (int64 counters as int64).
    ``config`` (JSON) may say how to rebuild the skeleton: ``{"builder": "module:function", "kwargs": {...}}``.
    Returns the file size in bytes."""
    entries: dict = {}
    for name, module in packed.named_modules():
        if isinstance(module, PackedBinaryConv):
            prefix = f"{name}." if name else ""
            entries[prefix + "weight"] = ("binary", _negative_signs(module.weights))
            entries[prefix + "alpha"] = ("float32", module.weights.alpha)
            entries[prefix + "lo"] = ("float32", module.lo)
            entries[prefix + "hi"] = ("float32", module.hi)
    for key, value in packed.state_dict().items():
        entries[key] = ("int64" if value.dtype == torch.int64 else "float32", value)
    return fileformat.save(path, entries, config)


def _build_from_config(config: Optional[dict]) -> nn.Module:
    if not config or "builder" not in config:
        raise ValueError("the file has no config.builder: pass the float model skeleton as `model`")
    module_name, _, attr = config["builder"].partition(":")
    # Only fa_lib's own model constructors: a file must not be able to name arbitrary callables.
    if not module_name.startswith("fa_lib.models.") or not attr or attr.startswith("_"):
        raise ValueError(f"config.builder must name a fa_lib.models constructor, got {config['builder']!r}")
    builder = getattr(importlib.import_module(module_name), attr)
    return builder(**config.get("kwargs", {}))


def load_packed(path, model: Optional[nn.Module] = None, isa: Optional[str] = None,
                threads: Optional[int] = None, real_layers: str = "channels_last",
                cross_block_packing: bool = False) -> nn.Module:
    """Rebuilds a packed network from a file written by :func:`save_packed`.

    ``model`` is an (untrained) float skeleton of the same architecture; without it the file's
    ``config.builder`` is called.  ``real_layers``, ``cross_block_packing``: see :func:`pack_model`."""
    config, entries = fileformat.load(path)
    skeleton = model if model is not None else _build_from_config(config)
    if real_layers not in REAL_LAYER_LAYOUTS:
        raise ValueError(f"real_layers must be one of {REAL_LAYER_LAYOUTS}, got {real_layers!r}")
    if real_layers == "fast" and not isinstance(skeleton, FAN):
        raise ValueError(f"real_layers='fast' needs a FAN skeleton, got {type(skeleton).__name__}")
    # the file holds the exact packing's state (BN unfolded); the fast rewrite is applied after loading
    layout = "channels_last" if real_layers == "fast" else real_layers
    packed = pack_model(skeleton.eval(), isa=isa, threads=threads, real_layers=layout,
                        cross_block_packing=cross_block_packing)
    used = set()
    for name, module in packed.named_modules():
        if isinstance(module, PackedBinaryConv):
            prefix = f"{name}." if name else ""
            keys = [prefix + s for s in ("weight", "alpha", "lo", "hi")]
            missing = [k for k in keys if k not in entries]
            if missing:
                raise ValueError(f"{path}: missing entries {missing}")
            negative, alpha, lo, hi = (entries[k][1] for k in keys)
            if tuple(negative.shape) != (module.out_channels, module.in_channels, module.kernel_size,
                                         module.kernel_size):
                raise ValueError(f"{path}: {keys[0]} has shape {negative.shape}, the model expects "
                                 f"{(module.out_channels, module.in_channels, module.kernel_size, module.kernel_size)}")
            module.weights = _weights_from_signs(negative, alpha)
            module.lo, module.hi = lo.float().contiguous(), hi.float().contiguous()
            used.update(keys)
    state = {k: v for k, (kind, v) in entries.items() if k not in used}
    packed.load_state_dict(state, strict=True)
    return _fast_real_layers(packed) if real_layers == "fast" else packed


def compression_report(model: nn.Module, path) -> dict:
    """Sizes of ``model`` as a float32 state_dict and as a packed file (written to ``path``), thesis Fig. 5.4.

    ``binary_params`` are the weights of binary convolutions (1 bit each in the file: ``binary_bits_bytes``),
    ``real_params`` everything else (stem, heads, BN; the BN before each binary conv is stored as 2
    thresholds per channel); ``other_bytes`` = alphas, thresholds, real layers, header and alignment.

    The thesis's 39x exceeds the 32x of 1-bit weights, so its float baseline must have held more than 32
    bits per binary weight (e.g. Torch7 modules serialise ``gradWeight``/``gradBias`` next to the weights,
    doubling the float file); against weights only, 1-bit packing cannot pass 32x."""
    model = model.eval()
    float_bytes = sum(v.numel() * 4 for v in model.state_dict().values() if v.is_floating_point())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    binary_params = sum(m.weight.numel() for m in model.modules() if _is_binary_conv(m))
    real_params = sum(p.numel() for p in model.parameters()) - binary_params
    packed_bytes = save_packed(pack_model(model), path)
    _, entries = fileformat.load(path)
    bits_bytes = sum(-(-v.size // 8) for kind, v in entries.values() if kind == "binary")
    return {
        "binary_bits_bytes": bits_bytes,
        "other_bytes": packed_bytes - bits_bytes,
        "float32_state_dict_bytes": float_bytes,
        "torch_save_bytes": buf.getbuffer().nbytes,
        "packed_file_bytes": packed_bytes,
        "ratio_vs_float32": float_bytes / packed_bytes,
        "ratio_vs_torch_save": buf.getbuffer().nbytes / packed_bytes,
        "binary_params": binary_params,
        "real_params": real_params,
    }
