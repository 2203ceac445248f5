"""Python wrapper of the bit-packed binary convolution kernels (thesis ch. 5, eq. 5.1-5.2).

The binary layer rule shared with :mod:`fa_lib.models.binary`:

* activations go through BN, then ``sign(v) = +1 if v >= 0 else -1`` (a comparison: ``-0.0 -> +1``);
* weights ``sign(W)`` (same rule), scaled per output channel by ``alpha = mean|W|`` (eq. 5.2);
* the convolution pads with ZEROS after the sign (border taps contribute 0);
* output ``alpha[c] * integer dot product``, no bias.

BN + sign is folded into a per-channel interval ``lo[c] <= x <= hi[c]`` meaning "+1" (``[t, inf]`` for a
positive gamma, ``[-inf, t]`` for a negative one, everything or nothing for gamma == 0); the thresholds are
found by a search over the float32 line that evaluates the BN module itself, so they reproduce its
float rounding exactly.

Tensors cross this boundary as logically NCHW float32 torch tensors stored channels-last
(``torch.channels_last``); other layouts are converted.  The C library (``_xnor``, built by setup.py) is
called through ctypes and shares torch's OpenMP runtime; ``threads`` defaults to ``torch.get_num_threads()``.
Set ``FA_LIB_XNOR_ISA=amx|avx512|avx2|scalar`` to force a code path (an error if this CPU lacks it).
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch  # imported before the C library so that its libgomp is the one the library binds to

ISA_CODES = {"scalar": 0, "avx2": 1, "avx512": 2, "amx": 3}
#: fastest first; "amx" computes the same +-1 dot products as an int8 tile matrix product (xnor_amx.c)
ISA_ORDER = ("amx", "avx512", "avx2", "scalar")
ISA_ENV_VAR = "FA_LIB_XNOR_ISA"
BLOCK = 32  # output channels per weight block (one 64-bit lane each); must match FA_BLOCK in xnor.h


class _ConvArgs(ctypes.Structure):
    _fields_ = [
        ("act", ctypes.c_void_p),
        ("n", ctypes.c_int64), ("h", ctypes.c_int64), ("w", ctypes.c_int64),
        ("cin", ctypes.c_int64), ("cw", ctypes.c_int64), ("pad_in", ctypes.c_int64),
        ("weights", ctypes.c_void_p), ("tapsum", ctypes.c_void_p), ("alpha", ctypes.c_void_p),
        ("cout", ctypes.c_int64), ("k", ctypes.c_int64),
        ("out", ctypes.c_void_p), ("out_pixel_stride", ctypes.c_int64),
        ("relu", ctypes.c_int64), ("residual", ctypes.c_void_p), ("residual_pixel_stride", ctypes.c_int64),
        ("next_bits", ctypes.c_void_p), ("next_cw", ctypes.c_int64), ("next_pad", ctypes.c_int64),
        ("next_channel_offset", ctypes.c_int64), ("next_lo", ctypes.c_void_p), ("next_hi", ctypes.c_void_p),
        ("weights_i8", ctypes.c_void_p),
        ("final_bits", ctypes.c_void_p), ("final_cw", ctypes.c_int64), ("final_pad", ctypes.c_int64),
        ("final_channel_offset", ctypes.c_int64), ("final_lo", ctypes.c_void_p), ("final_hi", ctypes.c_void_p),
    ]


class _PackTarget(ctypes.Structure):
    _fields_ = [("lo", ctypes.c_void_p), ("hi", ctypes.c_void_p), ("bits", ctypes.c_void_p), ("pad", ctypes.c_int64)]


_LIB: Optional[ctypes.CDLL] = None


def _library() -> ctypes.CDLL:
    """Loads the compiled extension (built by ``pip install -e .``) as a ctypes library."""
    global _LIB
    if _LIB is None:
        spec = importlib.util.find_spec("fa_lib.kernels._xnor")
        if spec is None or not spec.origin or not os.path.exists(spec.origin):
            raise ImportError("fa_lib.kernels._xnor is not built: run `pip install -e .` in the repository root")
        lib = ctypes.CDLL(spec.origin)
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        lib.fa_isa_supported.argtypes = [ctypes.c_int]
        lib.fa_isa_supported.restype = ctypes.c_int
        lib.fa_has_openmp.restype = ctypes.c_int
        lib.fa_pack_activations.argtypes = [ctypes.c_int, vp, i64, i64, i64, i64, i64, vp, vp, i64, vp, ctypes.c_int]
        lib.fa_pack_activations.restype = ctypes.c_int
        lib.fa_binary_conv.argtypes = [ctypes.c_int, ctypes.POINTER(_ConvArgs), ctypes.c_int]
        lib.fa_binary_conv.restype = ctypes.c_int
        lib.fa_block_forward.argtypes = [ctypes.c_int, vp, i64, i64, i64, i64, i64, ctypes.POINTER(_PackTarget), i64,
                                         ctypes.POINTER(_ConvArgs), i64, ctypes.c_int]
        lib.fa_block_forward.restype = ctypes.c_int
        lib.fa_set_avx2_mixed.argtypes = [ctypes.c_int]
        lib.fa_set_avx2_mixed.restype = ctypes.c_int
        lib.fa_set_block_layer_by_layer.argtypes = [ctypes.c_int]
        lib.fa_set_block_layer_by_layer.restype = ctypes.c_int
        lib.fa_amx_weights_size.argtypes = [i64, i64, i64]
        lib.fa_amx_weights_size.restype = ctypes.c_int
        lib.fa_amx_pack_weights.argtypes = [vp, i64, i64, i64, vp]
        lib.fa_amx_pack_weights.restype = ctypes.c_int
        lib.fa_amx_set_min_pixels.argtypes = [ctypes.c_int]
        lib.fa_amx_set_min_pixels.restype = ctypes.c_int
        lib.fa_amx_peak.argtypes = [i64]
        lib.fa_amx_peak.restype = ctypes.c_int
        _LIB = lib
    return _LIB


@functools.lru_cache(maxsize=None)
def _supported_isas() -> tuple[str, ...]:
    lib = _library()
    return tuple(name for name in ISA_ORDER if lib.fa_isa_supported(ISA_CODES[name]))


def available_isas() -> list[str]:
    """Code paths this CPU can run, fastest first (e.g. ``["amx", "avx512", "avx2", "scalar"]``).

    ``amx`` (Intel AMX-INT8, Linux 5.16+) is not an XOR/popcount path: it multiplies the same +-1 values as
    int8 matrices on the tile unit and gives the same integers; the others are XOR + popcount."""
    return list(_supported_isas())


def set_amx_min_pixels(pixels: int) -> int:
    """Maps with fewer than ``pixels`` pixels (N*H*W; default 32) run the AVX-512 popcount kernel even when
    ``isa="amx"``: below one 32-pixel tile block the tile unit's set-up and drain cost more than the
    products.  Returns the previous value; 0 forces the tile kernel everywhere (used by the tests)."""
    return int(_library().fa_amx_set_min_pixels(int(pixels)))


def set_block_layer_by_layer(on: bool) -> bool:
    """With one thread a :class:`BlockProgram` interleaves its convolutions row by row (each a few rows
    behind its producer, so the rows it reads are still in cache); ``True`` runs them layer by layer
    instead, as with several threads (same results, for tests and timing). Returns the previous setting."""
    return bool(_library().fa_set_block_layer_by_layer(int(bool(on))))


def set_avx2_mixed(setting: Optional[bool]) -> Optional[bool]:
    """The AVX2 kernel counts 8 of each block's 32 output channels with scalar POPCNT beside the vector
    look-up on AMD cores (their 4 integer ALUs all have POPCNT); None decides by the CPU (the default),
    True / False force it. The integers are the same. Returns the previous setting."""
    previous = _library().fa_set_avx2_mixed(-1 if setting is None else int(bool(setting)))
    return None if previous < 0 else bool(previous)


def amx_min_pixels() -> int:
    """The current threshold of :func:`set_amx_min_pixels`."""
    previous = set_amx_min_pixels(0)
    set_amx_min_pixels(previous)
    return previous


def amx_peak_gmacs(steps: int = 200_000, repeats: int = 3) -> Optional[float]:
    """Measured int8 multiply-accumulate rate of one core's AMX tile unit (GMAC/s, best of ``repeats``) with
    the operands in tile registers: the ceiling of the ``amx`` path.  None where the CPU has no AMX."""
    if "amx" not in available_isas():
        return None
    import time
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _check(_library().fa_amx_peak(int(steps)), "amx_peak")
        best = min(best, time.perf_counter() - start)
    return steps * 4 * 16 * 16 * 64 / best / 1e9


def has_openmp() -> bool:
    return bool(_library().fa_has_openmp())


def resolve_isa(isa: Optional[str] = None) -> str:
    """The code path to use: ``isa`` if given, else ``$FA_LIB_XNOR_ISA``, else the fastest available."""
    if isa is None:
        return _resolve_isa(os.environ.get(ISA_ENV_VAR) or None, ISA_ENV_VAR)
    return _resolve_isa(isa, "isa argument")


@functools.lru_cache(maxsize=32)
def _resolve_isa(isa: Optional[str], source: str) -> str:
    if isa is None:
        return available_isas()[0]
    if isa not in ISA_CODES:
        raise ValueError(f"{source}={isa!r}: expected one of {sorted(ISA_CODES)}")
    if isa not in available_isas():
        raise RuntimeError(f"{source}={isa!r} but this CPU supports only {available_isas()}")
    return isa


def _threads(threads: Optional[int]) -> int:
    return int(threads) if threads is not None else torch.get_num_threads()


def _check(code: int, what: str) -> None:
    if code == -1:
        raise RuntimeError(f"{what}: instruction set not supported by this CPU")
    if code != 0:
        raise ValueError(f"{what}: the C kernel rejected its arguments (code {code})")


# ---------------------------------------------------------------------------------------------------
# Thresholds: BN + sign folded into an interval per channel
# ---------------------------------------------------------------------------------------------------

_INF_KEY = 0x7F800000  # ordered key of +inf; -inf is -_INF_KEY - 1


def _float_to_key(f: torch.Tensor) -> torch.Tensor:
    """Monotone map float32 -> int64 (consecutive floats get consecutive keys; -0.0 sits just below +0.0)."""
    bits = f.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF) - 1)


def _key_to_float(key: torch.Tensor) -> torch.Tensor:
    bits = torch.where(key >= 0, key, (-(key + 1)) | 0x80000000)
    bits = torch.where(bits >= 2**31, bits - 2**32, bits)
    return bits.to(torch.int32).view(torch.float32)


def sign_thresholds(bn: Optional[torch.nn.Module], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel interval ``(lo, hi)`` such that ``sign(bn(x))[c] == +1  <=>  lo[c] <= x <= hi[c]``.

    ``bn=None`` means a plain sign (``lo = 0``, ``hi = +inf``).  Otherwise ``bn`` must be an eval-mode
    ``BatchNorm2d``; the boundary is located by bisection over the float32 line using the module's own
    forward, so the folded comparison agrees with ``bn(x) >= 0`` bit for bit (BN in eval mode is a
    monotone per-element map: increasing for gamma > 0, decreasing for gamma < 0, constant for gamma == 0).
    """
    inf = torch.full((channels,), float("inf"))
    if bn is None:
        return torch.zeros(channels), inf.clone()
    if not isinstance(bn, torch.nn.BatchNorm2d):
        raise ValueError(f"sign_thresholds expects a BatchNorm2d, got {type(bn).__name__}")
    if bn.training:
        raise ValueError("sign_thresholds needs the BatchNorm2d in eval mode (call model.eval() first)")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("sign_thresholds needs a BatchNorm2d with running statistics (track_running_stats=True)")
    if bn.num_features != channels:
        raise ValueError(f"BatchNorm2d has {bn.num_features} channels, the convolution expects {channels}")
    gamma = bn.weight.detach().float() if bn.weight is not None else torch.ones(channels)

    def positive(values: torch.Tensor) -> torch.Tensor:
        """sign(bn(v)) == +1 for a (C, M) grid of candidate values (M per channel)."""
        with torch.no_grad():
            return bn(values.reshape(1, channels, 1, -1))[0, :, 0, :] >= 0

    increasing = gamma > 0
    # Search over the ordered float32 keys with 256 probes per channel and call (a 257-ary search,
    # 4-5 BN calls).  Invariant for increasing channels: positive(hi) and not positive(lo); mirrored
    # for decreasing ones (positive(lo), not positive(hi)).
    lo = torch.full((channels,), -_INF_KEY - 1, dtype=torch.int64)
    hi = torch.full((channels,), _INF_KEY, dtype=torch.int64)
    steps = torch.arange(1, 257, dtype=torch.int64)
    while bool(((hi - lo) > 1).any()):
        candidates = lo[:, None] + ((hi - lo)[:, None] * steps) // 257  # (C, 256), non-decreasing
        pos = positive(_key_to_float(candidates))
        go_up = torch.where(increasing[:, None], ~pos, pos)  # the boundary lies above this candidate
        count = go_up.sum(dim=1)  # monotone predicate: go_up is a prefix of the candidates
        below = candidates.gather(1, (count - 1).clamp(min=0)[:, None])[:, 0]
        above = candidates.gather(1, count.clamp(max=255)[:, None])[:, 0]
        lo = torch.where(count > 0, below, lo)
        hi = torch.where(count < 256, above, hi)
    lo_t = torch.where(increasing, _key_to_float(hi), -inf)
    hi_t = torch.where(increasing, inf, _key_to_float(lo))
    # gamma == 0: BN is the constant beta, so the channel is always +1 or always -1.
    flat = gamma == 0
    if bool(flat.any()):
        always = positive(torch.zeros(channels, 1))[:, 0]
        lo_t = torch.where(flat, torch.where(always, -inf, inf), lo_t)
        hi_t = torch.where(flat, torch.where(always, inf, -inf), hi_t)
    return lo_t.contiguous(), hi_t.contiguous()


# ---------------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------------


@dataclass
class PackedActivations:
    """Sign bits of an activation map: int64 words ``[N][H + 2*pad][W + 2*pad][ceil(C/64)]``."""

    words: torch.Tensor
    channels: int
    pad: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, hp, wp, _ = self.words.shape
        return n, self.channels, hp - 2 * self.pad, wp - 2 * self.pad


def _pixel_stride(x: torch.Tensor) -> Optional[int]:
    """Floats between consecutive pixels if ``x`` (NCHW) is stored channels-last, possibly as a channel
    slice of a wider channels-last tensor; None otherwise.  Size-1 dimensions may carry any stride."""
    n, c, h, w = x.shape
    s = x.stride()
    if c > 1 and s[1] != 1:
        return None
    if w > 1:
        ps = s[3]
    elif h > 1:
        ps = s[2]
    elif n > 1:
        ps = s[0]
    else:
        return c
    ok = ps >= c and (h == 1 or s[2] == w * ps) and (n == 1 or s[0] == h * w * ps)
    return ps if ok else None


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """float32 NCHW tensor with channels-last storage (no copy when it already is one)."""
    if x.dim() != 4:
        raise ValueError(f"expected an NCHW tensor, got shape {tuple(x.shape)}")
    x = x.float()
    return x if _pixel_stride(x) is not None else x.contiguous(memory_format=torch.channels_last)


def pack_activations(x: torch.Tensor, lo: Optional[torch.Tensor] = None, hi: Optional[torch.Tensor] = None,
                     pad: int = 1, isa: Optional[str] = None, threads: Optional[int] = None,
                     out: Optional[torch.Tensor] = None) -> PackedActivations:
    """BN + sign + bit-packing along channels in one pass (``lo``/``hi`` from :func:`sign_thresholds`;
    both None means plain sign).  ``x`` may be a channel slice of a channels-last tensor."""
    if x.dim() != 4:
        raise ValueError(f"pack_activations expects NCHW, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    x = to_channels_last(x)
    n, c, h, w = x.shape
    if lo is None and hi is None:
        lo, hi = sign_thresholds(None, c)
    lo = lo.detach().float().contiguous()
    hi = hi.detach().float().contiguous()
    if lo.shape != (c,) or hi.shape != (c,):
        raise ValueError(f"thresholds must have shape ({c},), got {tuple(lo.shape)} and {tuple(hi.shape)}")
    cw = (c + 63) // 64
    shape = (n, h + 2 * pad, w + 2 * pad, cw)
    if out is None or tuple(out.shape) != shape or out.dtype != torch.int64 or not out.is_contiguous():
        out = torch.empty(shape, dtype=torch.int64)
    code = _library().fa_pack_activations(
        ISA_CODES[resolve_isa(isa)], x.data_ptr(), n, h, w, c, _pixel_stride(x),
        lo.data_ptr(), hi.data_ptr(), pad, out.data_ptr(), _threads(threads))
    _check(code, "pack_activations")
    return PackedActivations(out, c, pad)


@dataclass
class PackedWeights:
    """Binary weights of one convolution (eq. 5.1-5.2).

    ``bits``: int64 ``[Cout][k*k][ceil(Cin/64)]``, bit j of word w set <=> ``W[c, 64*w + j, tap] < 0``;
    ``alpha``: float32 ``[Cout]`` = mean |W| per output channel.  ``blocked``/``tapsum`` are the kernel
    layout (``[CB][k*k][CW][32]`` and the per-tap sums of sign(W) used by the border correction).
    """

    bits: torch.Tensor
    alpha: torch.Tensor
    in_channels: int
    kernel_size: int

    def __post_init__(self):
        cout, kk, cw = self.bits.shape
        if kk != self.kernel_size ** 2 or cw != (self.in_channels + 63) // 64 or self.alpha.shape != (cout,):
            raise ValueError("inconsistent PackedWeights shapes")
        if sys.byteorder != "little":
            raise RuntimeError("the bit layout assumes a little-endian CPU")
        bits = self.bits.numpy().view(np.uint64)
        cb = -(-cout // BLOCK)
        padded = np.zeros((cb * BLOCK, kk, cw), dtype=np.uint64)
        padded[:cout] = bits
        self.blocked = torch.from_numpy(np.ascontiguousarray(
            padded.reshape(cb, BLOCK, kk, cw).transpose(0, 2, 3, 1)).view(np.int64))
        ones = np.unpackbits(padded.view(np.uint8), axis=-1).reshape(cb * BLOCK, kk, -1).sum(-1).astype(np.int64)
        tapsum = np.where(np.arange(cb * BLOCK)[:, None] < cout, self.in_channels - 2 * ones, 0)
        self.tapsum = torch.from_numpy(np.ascontiguousarray(tapsum.reshape(cb, BLOCK, kk).transpose(0, 2, 1)))
        self.alpha = self.alpha.detach().float().contiguous()

    @property
    def out_channels(self) -> int:
        return self.bits.shape[0]

    def amx_weights(self) -> torch.Tensor:
        """The weights expanded to +-1 int8 AMX tiles (xnor_amx.c), computed once and cached."""
        cached = getattr(self, "_amx", None)
        if cached is None:
            lib = _library()
            size = lib.fa_amx_weights_size(self.out_channels, self.in_channels, self.kernel_size)
            _check(size if size < 0 else 0, "amx_weights")
            cached = torch.empty(size, dtype=torch.int8)
            _check(lib.fa_amx_pack_weights(self.blocked.data_ptr(), self.out_channels, self.in_channels,
                                           self.kernel_size, cached.data_ptr()), "amx_weights")
            self._amx = cached
        return cached


def sign_bits(values: np.ndarray) -> np.ndarray:
    """Boolean "is -1" under the project's sign rule (v >= 0 -> +1, so -0.0 -> +1 and NaN -> -1)."""
    return ~(values >= 0)


def pack_weight_bits(weight: torch.Tensor) -> torch.Tensor:
    """int64 ``[Cout][k*k][ceil(Cin/64)]`` sign bits of a ``(Cout, Cin, k, k)`` weight."""
    cout, cin, k, _ = weight.shape
    neg = sign_bits(weight.detach().float().numpy()).reshape(cout, cin, k * k).transpose(0, 2, 1)
    cw = (cin + 63) // 64
    padded = np.zeros((cout, k * k, cw * 64), dtype=bool)
    padded[:, :, :cin] = neg
    words = np.packbits(padded, axis=-1, bitorder="little").view("<u8").view(np.int64)
    return torch.from_numpy(np.ascontiguousarray(words))


def pack_weights(weight: torch.Tensor, alpha: Optional[torch.Tensor] = None) -> PackedWeights:
    """Packs a float ``(Cout, Cin, k, k)`` weight; ``alpha`` defaults to eq. 5.2, ``mean |W|`` per channel."""
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"expected a (Cout, Cin, k, k) weight with odd k, got {tuple(weight.shape)}")
    w = weight.detach().float()
    if alpha is None:
        alpha = w.abs().mean(dim=(1, 2, 3))
    return PackedWeights(pack_weight_bits(w), alpha.detach().float().reshape(-1), w.shape[1], w.shape[2])


# ---------------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------------


def empty_packed(n: int, channels: int, h: int, w: int, pad: int = 1) -> PackedActivations:
    """A zeroed packed-activation buffer (zero bits = padding), to be filled by a fused epilogue."""
    return PackedActivations(torch.zeros((n, h + 2 * pad, w + 2 * pad, (channels + 63) // 64), dtype=torch.int64),
                             channels, pad)


def binary_conv(act: PackedActivations, weights: PackedWeights, out: Optional[torch.Tensor] = None,
                out_channel_offset: int = 0, scale: bool = True, isa: Optional[str] = None,
                threads: Optional[int] = None, relu: bool = False, residual: Optional[torch.Tensor] = None,
                next_act: Optional[PackedActivations] = None, next_lo: Optional[torch.Tensor] = None,
                next_hi: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary convolution, stride 1, "same" zero padding applied after the sign (eq. 5.1).

    Returns (or fills ``out[:, offset:offset + Cout]`` of) a channels-last float32 NCHW tensor holding
    ``alpha[c] * dot`` (``scale=True``) or the exact integer ``dot`` (``scale=False``).

    Fused epilogue: ``relu`` clamps at 0 (ReLU after the conv); ``next_act`` (from :func:`empty_packed`)
    receives the sign bits of the (ReLU'd) output under the next layer's thresholds ``next_lo/next_hi``,
    i.e. the next layer's input packing; ``residual`` (channels-last, Cout channels, may be the same
    slice of ``out``) is added to what is stored in ``out`` after the bits were taken."""
    n, c, h, w = act.shape
    if c != weights.in_channels:
        raise ValueError(f"activations have {c} channels, weights expect {weights.in_channels}")
    k = weights.kernel_size
    if act.pad < (k - 1) // 2:
        raise ValueError(f"a {k}x{k} convolution needs activations packed with pad >= {(k - 1) // 2}")
    cout = weights.out_channels
    if out is None:
        if out_channel_offset != 0:
            raise ValueError("out_channel_offset needs an explicit out tensor")
        out = torch.empty((n, cout, h, w), dtype=torch.float32, memory_format=torch.channels_last)
    if out.dtype != torch.float32 or out.dim() != 4 or tuple(out.shape[::2]) != (n, h) or out.shape[3] != w:
        raise ValueError(f"out must be float32 of shape ({n}, C, {h}, {w}), got {tuple(out.shape)} {out.dtype}")
    pixel_stride = _pixel_stride(out)
    if pixel_stride is None:
        raise ValueError("out must be stored channels-last (torch.channels_last)")
    if out_channel_offset < 0 or out_channel_offset + cout > out.shape[1]:
        raise ValueError(f"channels [{out_channel_offset}, {out_channel_offset + cout}) do not fit in out "
                         f"with {out.shape[1]} channels")
    args = _ConvArgs(
        act.words.data_ptr(), n, h, w, c, act.words.shape[3], act.pad,
        weights.blocked.data_ptr(), weights.tapsum.data_ptr(),
        weights.alpha.data_ptr() if scale else None, cout, k,
        out.data_ptr() + 4 * out_channel_offset, pixel_stride, int(bool(relu)))
    if residual is not None:
        if residual.dtype != torch.float32 or tuple(residual.shape) != (n, cout, h, w):
            raise ValueError(f"residual must be float32 of shape {(n, cout, h, w)}, got {tuple(residual.shape)}")
        res_stride = _pixel_stride(residual)
        if res_stride is None:
            raise ValueError("residual must be stored channels-last")
        args.residual, args.residual_pixel_stride = residual.data_ptr(), res_stride
    if next_act is not None:
        if next_act.shape != (n, cout, h, w) or next_lo is None or next_hi is None:
            raise ValueError(f"next_act must hold {cout} channels of {h}x{w} and come with next_lo/next_hi")
        if next_lo.shape != (cout,) or next_hi.shape != (cout,) or next_lo.dtype != torch.float32:
            raise ValueError(f"next_lo/next_hi must be float32 of shape ({cout},)")
        args.next_bits, args.next_cw, args.next_pad = next_act.words.data_ptr(), next_act.words.shape[3], next_act.pad
        args.next_lo, args.next_hi = next_lo.contiguous().data_ptr(), next_hi.contiguous().data_ptr()
    isa = resolve_isa(isa)
    if isa == "amx":
        args.weights_i8 = weights.amx_weights().data_ptr()
    _check(_library().fa_binary_conv(ISA_CODES[isa], ctypes.byref(args), _threads(threads)), "binary_conv")
    return out


@dataclass
class ConvStep:
    """One convolution of a :class:`BlockProgram`.

    ``source``: where its packed input comes from, ``("pack", i)`` (the block input packed under the
    program's i-th threshold set) or ``("conv", j)`` (the epilogue of step j < this one, under this step's
    ``lo``/``hi``: ``lo``/``hi`` are then required).  ``out_offset``: its first channel in the block output;
    ``residual``: add the shortcut's same channels (``"shortcut"``) or accumulate into what an earlier step
    wrote there (``"out"``), or nothing (None)."""

    weights: PackedWeights
    source: tuple[str, int]
    out_offset: int
    relu: bool = False
    residual: Optional[str] = "shortcut"
    lo: Optional[torch.Tensor] = None
    hi: Optional[torch.Tensor] = None


class BlockProgram:
    """A block of binary convolutions at one input size, run by one native call (``fa_block_forward``):
    the input packed once per threshold set, then each :class:`ConvStep` in order with its epilogue
    packing the next step's input and adding the shortcut, without Python between the layers.

    The packed intermediate buffers are allocated (and their padding zeroed) once here and reused by every
    :meth:`run`, so one program must not run in two threads at once (the packed modules keep one per
    thread).  ``packs``: ``(lo, hi, pad)`` threshold sets of the block input."""

    def __init__(self, n: int, h: int, w: int, in_channels: int, packs: list, steps: list[ConvStep],
                 isa: Optional[str] = None, final: Optional[tuple] = None):
        """``final``: ``(lo, hi, bits)``, the block output's sign bits under the thresholds ``lo``/``hi`` (one
        per output channel) written into the :class:`PackedActivations` ``bits`` by the epilogues of the steps
        that store each channel's last value: the next block's input, packed by this one (see
        :meth:`final_capable`; not on AMX)."""
        self.isa = resolve_isa(isa)
        self.shape = (n, in_channels, h, w)
        self.steps = steps
        self._keep = []  # tensors whose addresses the argument structs hold
        self._packs = (_PackTarget * len(packs))()
        self._pack_los = []
        pack_buffers = []
        for i, (lo, hi, pad) in enumerate(packs):
            lo, hi = lo.detach().float().contiguous(), hi.detach().float().contiguous()
            if lo.shape != (in_channels,) or hi.shape != (in_channels,):
                raise ValueError(f"pack {i}: thresholds must have shape ({in_channels},)")
            bits = PackedActivations(torch.zeros((n, h + 2 * pad, w + 2 * pad, (in_channels + 63) // 64),
                                                 dtype=torch.int64), in_channels, pad)
            self._packs[i] = _PackTarget(lo.data_ptr(), hi.data_ptr(), bits.words.data_ptr(), pad)
            self._pack_los.append((lo.data_ptr(), hi.data_ptr()))
            pack_buffers.append(bits)
            self._keep += [lo, hi]
        self.pack_buffers = pack_buffers
        self._convs = (_ConvArgs * len(steps))()
        produced: dict[int, PackedActivations] = {}
        for i, step in enumerate(steps):  # which steps' epilogues pack for a later step
            kind, j = step.source
            if kind == "conv":
                if not 0 <= j < i or step.lo is None or step.hi is None:
                    raise ValueError(f"step {i} reads step {j}'s output: needs an earlier step and lo/hi")
                produced[j] = empty_packed(n, steps[j].weights.out_channels, h, w, pad=1)
        for i, step in enumerate(steps):
            kind, j = step.source
            act = pack_buffers[j] if kind == "pack" else produced[j]
            weights = step.weights
            if act.channels != weights.in_channels or act.pad < (weights.kernel_size - 1) // 2:
                raise ValueError(f"step {i}: its input has {act.channels} channels and padding {act.pad}, the "
                                 f"{weights.kernel_size}x{weights.kernel_size} weights expect {weights.in_channels}")
            args = _ConvArgs(act.words.data_ptr(), n, h, w, act.channels, act.words.shape[3], act.pad,
                             weights.blocked.data_ptr(), weights.tapsum.data_ptr(), weights.alpha.data_ptr(),
                             weights.out_channels, weights.kernel_size, None, 0, int(bool(step.relu)))
            consumer = next((s for s in steps[i + 1:] if s.source == ("conv", i)), None)
            if consumer is not None:
                nxt = produced[i]
                lo, hi = consumer.lo.detach().float().contiguous(), consumer.hi.detach().float().contiguous()
                args.next_bits, args.next_cw, args.next_pad = nxt.words.data_ptr(), nxt.words.shape[3], nxt.pad
                args.next_lo, args.next_hi = lo.data_ptr(), hi.data_ptr()
                self._keep += [lo, hi]
            if self.isa == "amx":
                args.weights_i8 = weights.amx_weights().data_ptr()
            self._convs[i] = args
            self._keep += [weights.blocked, weights.tapsum, weights.alpha]
        self._keep += [b.words for b in pack_buffers] + [b.words for b in produced.values()]
        self.final = final
        if final is not None:
            if not self.final_capable(steps, self.isa):
                raise ValueError("this block cannot pack its output for the next block: every step storing a final "
                                 "value must start at a multiple of 32 channels, and the ISA must not be AMX")
            lo, hi, bits = final
            lo, hi = lo.detach().float().contiguous(), hi.detach().float().contiguous()
            channels = max(st.out_offset + st.weights.out_channels for st in steps)
            if lo.shape != (channels,) or hi.shape != (channels,) or bits.channels != channels or \
                    tuple(bits.words.shape[:3]) != (n, h + 2 * bits.pad, w + 2 * bits.pad):
                raise ValueError(f"final: thresholds and bits must be of the block output ({channels} channels, {h}x{w})")
            for i in self._final_steps(steps):
                args, step = self._convs[i], steps[i]
                args.final_bits, args.final_cw, args.final_pad = bits.words.data_ptr(), bits.words.shape[3], bits.pad
                args.final_channel_offset = step.out_offset
                args.final_lo, args.final_hi = lo.data_ptr() + 4 * step.out_offset, hi.data_ptr() + 4 * step.out_offset
            self._keep += [lo, hi, bits.words]

    @staticmethod
    def _final_steps(steps: list[ConvStep]) -> list[int]:
        """The steps whose stored values are final: no later step accumulates into their channels."""
        def overlaps(a: ConvStep, b: ConvStep) -> bool:
            return a.out_offset < b.out_offset + b.weights.out_channels and b.out_offset < a.out_offset + a.weights.out_channels
        return [i for i, step in enumerate(steps)
                if not any(later.residual == "out" and overlaps(step, later) for later in steps[i + 1:])]

    @classmethod
    def final_capable(cls, steps: list[ConvStep], isa: Optional[str] = None) -> bool:
        """Whether a program of these steps can pack its output for the next block (``final``)."""
        return resolve_isa(isa) != "amx" and all(steps[i].out_offset % BLOCK == 0 for i in cls._final_steps(steps))

    def run(self, x: torch.Tensor, out: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
            threads: Optional[int] = None, prepacked: tuple[int, ...] = ()) -> torch.Tensor:
        """Runs the block on ``x`` (channels-last float32 of the program's shape) into ``out``
        (channels-last float32); ``shortcut`` is what steps with ``residual="shortcut"`` add. ``prepacked``:
        the threshold sets whose buffers (:attr:`pack_buffers`) already hold ``x`` packed, by the block that
        produced it: they are not packed again."""
        if tuple(x.shape) != self.shape or x.dtype != torch.float32:
            raise ValueError(f"this program runs inputs of shape {self.shape}, got {tuple(x.shape)} {x.dtype}")
        x_stride, out_stride = _pixel_stride(x), _pixel_stride(out)
        if x_stride is None or out_stride is None or out.dtype != torch.float32 or \
                tuple(out.shape[::2]) != (self.shape[0], self.shape[2]) or out.shape[3] != self.shape[3]:
            raise ValueError("x and out must be channels-last float32 tensors of the program's size")
        shortcut_stride = None
        if shortcut is not None:
            shortcut_stride = _pixel_stride(shortcut)
            if shortcut_stride is None or shortcut.dtype != torch.float32 or shortcut.shape[2:] != out.shape[2:]:
                raise ValueError("shortcut must be a channels-last float32 tensor of the output's size")
        for i, step in enumerate(self.steps):
            end = step.out_offset + step.weights.out_channels
            if end > out.shape[1]:
                raise ValueError(f"step {i} writes channels up to {end}, out has {out.shape[1]}")
            args = self._convs[i]
            args.out, args.out_pixel_stride = out.data_ptr() + 4 * step.out_offset, out_stride
            if step.residual == "shortcut":
                if shortcut is None or end > shortcut.shape[1]:
                    raise ValueError(f"step {i} adds the shortcut's channels up to {end}: pass a shortcut")
                args.residual = shortcut.data_ptr() + 4 * step.out_offset
                args.residual_pixel_stride = shortcut_stride
            elif step.residual == "out":
                args.residual, args.residual_pixel_stride = args.out, out_stride
            else:
                args.residual = None
        n, c, h, w = self.shape
        for i in prepacked:
            self._packs[i].lo = self._packs[i].hi = None
        try:
            _check(_library().fa_block_forward(ISA_CODES[self.isa], x.data_ptr(), n, h, w, c, x_stride, self._packs,
                                               len(self._packs), self._convs, len(self.steps), _threads(threads)),
                   "block_forward")
        finally:
            for i in prepacked:
                self._packs[i].lo, self._packs[i].hi = self._pack_los[i]
        return out
