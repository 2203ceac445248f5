"""Speed of the bit-packed binary convolution against torch's float convolution (thesis 5.4 "Performance").

The thesis expects "of the order of 58x" on CPU from XNOR-Net's operation count; what a CPU can deliver is
bounded by its popcount vs FMA throughput (~21x on a Zen 4 core with one 512-bit FMA pipe, ~11x on
Intel cores with two: XOR + VPOPCNTQ + add is 3 micro-ops per 512 binary MACs, ~341 MACs per cycle, against
32 fp32 MACs per cycle).  On Intel cores with AMX-INT8 the ``amx`` rows run the same +-1 products as int8
tile matrix products (TDPBSSD, 1024 MACs per cycle; :func:`fa_lib.kernels.xnor.amx_peak_gmacs` measures the
unit's rate and the CLI records it with the results); in practice the tile-store drain after every 32x32
output block and streaming the expanded weights from L2 hold the convolution well below that rate.
:func:`run_bench` measures, side by side in one process and interleaved (each
round runs torch, then binary, then binary + packing, each a few times back to back so that each is timed
warm), the minimum wall time of:

* single 3x3 convolutions of the hourglass shapes (256->128, 128->64, 64->64) at 64x64 ... 4x4;
* one hierarchical block (Fig. 5.1b, 256->256 at 64x64): packed block vs the same block in float;
* the single-hourglass binary network end to end (``network`` rows): packed vs the same network in float,
  once with its real layers rewritten for speed (``pack_model(real_layers="fast")``: BN folded, each real
  convolution + ReLU one oneDNN pass; float rounding) and once with exact real layers.

For a single convolution ``binary_ms`` excludes packing the input (BN + sign + bit-packing),
``binary_with_pack_ms`` includes a separate packing pass over its float input, and ``binary_fused_pack_ms``
is the convolution that also packs its own output for its successor in its epilogue (the cost per layer
of producing packed inputs in a chain of fused layers, as inside the hierarchical block); block and
network rows always include everything.

On an AVX-512 machine torch's float convolution uses AVX-512, so the ``avx2`` rows compare the AVX2 kernel
against an AVX-512 float baseline.  ``emulate_avx2_only`` (``--emulate-avx2-only``; on by default in
``fa-lib bench xnor``) adds rows measured in a child process whose torch is limited to AVX2 as well
(``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``): what an AVX2-only machine sees.
On a shared machine use ``--threads 1 --timer cpu`` (calling-thread CPU time) for steadier numbers.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from fa_lib.atomic import atomic_write_text
from fa_lib.inference import optimize_for_inference
from fa_lib.models.blocks import make_block
from fa_lib.models.fan import binary_hourglass_net

from . import packed as packed_mod
from . import xnor

COLUMNS = ["layer", "isa", "threads", "torch_ms", "binary_ms", "binary_with_pack_ms", "speedup", "speedup_with_pack",
           "torch_fast_ms", "speedup_vs_fast", "binary_fused_pack_ms", "speedup_fused_pack", "cpu", "machine_kind"]
#: the network rows: real layers rewritten for speed (``pack_model(real_layers="fast")``), and exact
NETWORK_LAYER = "network: binary HG (1 stack, 256 ch, 256x256 input)"
NETWORK_EXACT_LAYER = "network, exact real layers: binary HG (1 stack, 256 ch, 256x256 input)"
CONV_SHAPES = [(256, 128), (128, 64), (64, 64)]  # the three 3x3 layers of a 256-channel hierarchical block
RESOLUTIONS = [64, 32, 16, 8, 4]  # hourglass levels (depth 4) of a 64x64 heatmap network


_CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
BURST = 3  # consecutive runs of one candidate per round (see interleaved_min_ms)


def interleaved_min_ms(candidates: Sequence[Callable[[], object]], repeats: int, timer: str = "wall",
                        burst: int = BURST) -> list[float]:
    """Min time (ms) of each candidate over ``repeats`` rounds; the rounds go round-robin over the candidates
    so that load changes hit all alike, and within a round each candidate runs ``burst`` times back to back.

    Why bursts: run once after another candidate, a layer finds the caches (and the core's vector power
    state) left by that candidate -- the float conv evicts the packed weights and scratch, and the reverse --
    which is neither how a layer runs inside a network nor the same penalty for both sides.  The minimum
    over a burst is each candidate warm, as its neighbour layers would leave it in its own network.

    ``timer="cpu"`` measures the calling thread's CPU time (valid for 1 thread only: torch and the kernels
    then run in the calling thread), which ignores time lost to other processes on a shared machine."""
    clock = _CLOCKS[timer]
    with torch.no_grad():
        for fn in candidates:  # warm-up: allocations, caches, lazy initialisation
            fn()
        best = [float("inf")] * len(candidates)
        for _ in range(repeats):
            for i, fn in enumerate(candidates):
                for _ in range(max(1, burst)):
                    start = clock()
                    fn()
                    best[i] = min(best[i], clock() - start)
    return [b * 1e3 for b in best]


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics (negative gammas included) so that signs are not all equal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def machine_kind() -> str:
    """Which of the project's machine kinds this is, by the units the kernels use: "AMX (Intel)",
    "AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4)", "AVX-512 without VPOPCNTDQ", "AVX2 only" or "other"."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX (Intel)"
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    if "avx512_vpopcntdq" in flags:
        return "AVX-512 VPOPCNTDQ, no AMX (e.g. AMD Zen 4)"
    if "avx512f" in flags:
        return "AVX-512 without VPOPCNTDQ"
    return "AVX2 only" if "avx2" in flags else "other"


def _row(layer, isa, threads, torch_ms, binary_ms, with_pack_ms, torch_fast_ms=float("nan"),
         fused_pack_ms=float("nan")) -> dict:
    return {"layer": layer, "isa": isa, "threads": threads, "torch_ms": torch_ms, "binary_ms": binary_ms,
            "binary_with_pack_ms": with_pack_ms, "speedup": torch_ms / binary_ms,
            "speedup_with_pack": torch_ms / with_pack_ms, "torch_fast_ms": torch_fast_ms,
            "speedup_vs_fast": torch_fast_ms / with_pack_ms, "binary_fused_pack_ms": fused_pack_ms,
            "speedup_fused_pack": torch_ms / fused_pack_ms, "cpu": cpu_model(), "machine_kind": machine_kind()}


def bench_conv(cin: int, cout: int, size: int, isa: str, threads: int, repeats: int, timer: str = "wall") -> dict:
    gen = torch.Generator().manual_seed(cin * 1000 + size)
    x = torch.randn(1, cin, size, size, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    pw = xnor.pack_weights(weight)
    lo, hi = xnor.sign_thresholds(None, cin)
    act = xnor.pack_activations(x_cl, lo, hi, pad=1, isa=isa, threads=threads)
    next_lo, next_hi = xnor.sign_thresholds(None, cout)
    t_torch, t_bin, t_pack, t_fused = interleaved_min_ms([
        lambda: F.conv2d(x, weight, padding=1),
        lambda: xnor.binary_conv(act, pw, isa=isa, threads=threads),
        lambda: xnor.binary_conv(xnor.pack_activations(x_cl, lo, hi, pad=1, isa=isa, threads=threads), pw,
                                 isa=isa, threads=threads),
        # in a chain of fused layers each one packs its successor's input in its epilogue: this is the
        # cost per layer of producing packed inputs that way
        lambda: xnor.binary_conv(act, pw, isa=isa, threads=threads,
                                 next_act=xnor.empty_packed(1, cout, size, size, pad=1), next_lo=next_lo,
                                 next_hi=next_hi),
    ], repeats, timer)
    return _row(f"conv3x3 {cin}->{cout} @{size}x{size}", isa, threads, t_torch, t_bin, t_pack,
                fused_pack_ms=t_fused)


def bench_module(name: str, binary_model: torch.nn.Module, float_model: torch.nn.Module, x: torch.Tensor,
                 isa: str, threads: int, repeats: int, timer: str = "wall",
                 fast_float: torch.nn.Module | None = None, real_layers: str = "channels_last") -> dict:
    """The packed binary module against the eager float one (and, when given, against ``fast_float``,
    the float network as fast as PyTorch runs it: ``torch_fast_ms``, ``speedup_vs_fast``).
    ``real_layers``: as in :func:`fa_lib.kernels.packed.pack_model`."""
    packed = packed_mod.pack_model(binary_model, isa=isa, threads=threads, real_layers=real_layers)
    # Each side gets its own layout: torch NCHW, the packed module channels-last (what the previous
    # packed layer of a network hands it; a network's input image is converted inside the timed call).
    x_packed = x if x.shape[1] <= 4 else x.contiguous(memory_format=torch.channels_last)
    candidates = [lambda: float_model(x), lambda: packed(x_packed)]
    if fast_float is not None:
        candidates.append(lambda: fast_float(x))
    times = interleaved_min_ms(candidates, repeats, timer)
    return _row(name, isa, threads, times[0], times[1], times[1], times[2] if fast_float is not None else float("nan"))


def fast_float_network(model: torch.nn.Module, compile: bool = True) -> torch.nn.Module:
    """The float network as fast as PyTorch runs it on a CPU: batch norm folded into the convolutions,
    channels-last, and ``torch.compile`` (``fa_lib.inference.CompiledFAN``; the eager folded network
    where no compiler is available), compiled before timing."""
    fast = optimize_for_inference(model, compile=compile)
    with torch.no_grad():
        fast(torch.zeros(1, 3, 256, 256))  # compile outside the timed calls
    return fast


def _block_models(width: int = 256):
    return (_randomize_bn(make_block("hierarchical", width, width, binary=True)),
            make_block("hierarchical", width, width, binary=False).eval())


def _network_models():
    return (_randomize_bn(binary_hourglass_net(stacks=1, binary=True)),
            binary_hourglass_net(stacks=1, binary=False).eval())


def _profile_label(name: str, module: torch.nn.Module) -> str | None:
    kind = type(module).__name__
    if kind in ("Conv2d", "OneDnnConv2d"):
        k = module.weight.shape[-1]
        return f"real conv {k}x{k} ({'7x7 stem' if k == 7 else 'heads'})" if k in (1, 7) else f"real conv {k}x{k}"
    if kind == "BatchNorm2d":
        return "real batch norm (outside blocks)"
    if kind == "PackedHierarchicalBlock":
        return "binary hierarchical blocks (packed)"
    if kind == "PackedBinaryConv":
        return "binary convs outside blocks (packed)"
    return None


def profile_packed_network(isa: str | None = None, threads: int = 1, repeats: int = 8,
                           real_layers: str = "fast") -> pd.DataFrame:
    """Where the packed single-hourglass network's time goes: wall time of each top-level layer kind,
    measured with forward hooks in the fastest of ``repeats`` runs, the rest (pooling, upsampling,
    residual adds, layout changes between the layers) as the difference to the whole run.
    ``real_layers``: as in :func:`fa_lib.kernels.packed.pack_model` (column ``real_layers``)."""
    binary, _ = _network_models()
    net = packed_mod.pack_model(binary, isa=isa, threads=threads, real_layers=real_layers)
    inside = {id(sub) for m in net.modules() if type(m).__name__ == "PackedHierarchicalBlock"
              for sub in m.modules() if sub is not m}
    times: dict[str, float] = {}
    starts: dict[int, float] = {}

    def pre(module, inputs):
        starts[id(module)] = time.perf_counter()

    def post_for(label):
        def post(module, inputs, output):
            times[label] = times.get(label, 0.0) + time.perf_counter() - starts[id(module)]
        return post

    handles = []
    for name, module in net.named_modules():
        label = None if id(module) in inside else _profile_label(name, module)
        if label is not None:
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post_for(label))]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    best, snapshot = float("inf"), {}
    try:
        with torch.no_grad():
            net(x)
            for _ in range(repeats):
                times.clear()
                started = time.perf_counter()
                net(x)
                total = time.perf_counter() - started
                if total < best:
                    best, snapshot = total, dict(times)
    finally:
        torch.set_num_threads(previous)
        for handle in handles:
            handle.remove()
    rows = [{"part": k, "ms": 1000 * v} for k, v in sorted(snapshot.items(), key=lambda kv: -kv[1])]
    rows.append({"part": "pooling, upsampling, adds, layout (the rest)", "ms": 1000 * (best - sum(snapshot.values()))})
    df = pd.DataFrame(rows)
    df["share"] = df["ms"] / (1000 * best)
    df["cpu"], df["machine_kind"], df["threads"] = cpu_model(), machine_kind(), threads
    df["isa"] = xnor.resolve_isa(isa)
    df["real_layers"] = real_layers
    return df


def network_model_size() -> dict:
    """File sizes of the benchmark's binary network (single hourglass, 256 channels): its float32 state_dict
    against the packed file (:func:`fa_lib.kernels.packed.compression_report`, thesis Fig. 5.4's 39x)."""
    binary, _ = _network_models()
    with tempfile.TemporaryDirectory() as tmp:
        report = packed_mod.compression_report(binary, Path(tmp) / "network.fabin")
    return {"network": "binary HG (1 stack, 256 ch)", **report}


def _interleaved_medians(on: torch.nn.Module, off: torch.nn.Module, x: torch.Tensor, calls: int) -> tuple[float, float]:
    """Median ms of ``on`` and ``off`` over ``calls`` calls each, alternating (which goes first alternates too)."""
    times: dict[int, list[float]] = {id(on): [], id(off): []}
    with torch.no_grad():
        for _ in range(10):  # programs built, successors learned, caches warm
            on(x), off(x)
        for i in range(calls):
            for model in ((on, off) if i % 2 else (off, on)):
                start = time.perf_counter()
                model(x)
                times[id(model)].append(time.perf_counter() - start)
    return (1e3 * float(pd.Series(times[id(on)]).median()), 1e3 * float(pd.Series(times[id(off)]).median()))


def bench_cross_block(isa: Optional[str] = None, calls: int = 200, network_calls: int = 40) -> pd.DataFrame:
    """``pack_model(cross_block_packing=True)`` against the default, side by side in one process on one thread
    (interleaved calls, medians): a chain of four 256-channel hierarchical blocks at 64x64 (three block-to-block
    edges) and the benchmark's whole network with fast real layers. ``off_over_on`` > 1: packing the next
    block's input in the epilogues pays."""
    isa = xnor.resolve_isa(isa)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chain = torch.nn.Sequential(*[_randomize_bn(make_block("hierarchical", 256, 256, binary=True), seed=i)
                                      for i in range(4)]).eval()
        cases = [("4 hierarchical blocks 256->256 @64x64", chain, "channels_last",
                  torch.randn(1, 256, 64, 64).contiguous(memory_format=torch.channels_last), calls),
                 (NETWORK_LAYER, _network_models()[0], "fast", torch.randn(1, 3, 256, 256), network_calls)]
        rows = []
        for name, model, real_layers, x, n in cases:
            on, off = (packed_mod.pack_model(model, isa=isa, threads=1, real_layers=real_layers, cross_block_packing=flag)
                       for flag in (True, False))
            on_ms, off_ms = _interleaved_medians(on, off, x, n)
            rows.append({"case": name, "isa": isa, "threads": 1, "off_ms": off_ms, "on_ms": on_ms,
                         "off_over_on": off_ms / on_ms, "cpu": cpu_model(), "machine_kind": machine_kind()})
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)


def run_bench(out_csv: Optional[str | os.PathLike] = "results/tables/bench_xnor.csv",
              threads: Iterable[int] = (1, 2), isas: Optional[Iterable[str]] = None, repeats: int = 10,
              resolutions: Sequence[int] = RESOLUTIONS, include_block: bool = True,
              include_network: bool = True, network_repeats: int = 8, timer: str = "wall",
              emulate_avx2_only: bool = False, compile_baseline: bool = True,
              network_processes: int = 1) -> pd.DataFrame:
    """Runs the benchmark; writes ``out_csv`` (atomically) unless it is None; returns the table.

    ``timer``: "wall" (min of wall times, the default) or "cpu" (calling-thread CPU time, threads=(1,) only).
    ``emulate_avx2_only``: also measure an AVX2-only machine on this one (rows with isa
    :data:`AVX2_ONLY_LABEL`): a child process whose torch is limited to AVX2 (oneDNN and ATen dispatch)
    runs the AVX2 kernel against that float baseline. ``compile_baseline``: the network's fast float
    baseline is compiled (else BN-folded and channels-last only). ``network_processes`` > 1: the network rows
    are measured in that many fresh child processes, one after the other, and each row is the process with
    the median speed-up (on a virtual machine the whole network's time moves by up to a fifth from one
    process to the next, with the layers' own times steady); ``df.attrs["network_speedups"]`` lists every
    process's speed-up.

    Every row names the CPU and its machine kind; ``out_csv`` keeps the rows of other machine kinds
    (:func:`merge_by_machine`), so the file holds the latest run of each kind."""
    if timer not in _CLOCKS:
        raise ValueError(f"timer must be one of {sorted(_CLOCKS)}, got {timer!r}")
    threads = [int(t) for t in threads]
    if timer == "cpu" and threads != [1]:
        raise ValueError("timer='cpu' measures one thread: use threads=(1,)")
    isas = list(isas) if isas is not None else xnor.available_isas()
    for isa in isas:
        xnor.resolve_isa(isa)  # clear error for an unsupported or unknown ISA
    previous_threads = torch.get_num_threads()
    rows = []
    try:
        block = _block_models() if include_block else None
        in_children = include_network and network_processes > 1
        network = _network_models() if include_network and not in_children else None
        fast_network = fast_float_network(network[1], compile=compile_baseline) if network is not None else None
        for t in threads:
            torch.set_num_threads(int(t))
            for isa in isas:
                for size in resolutions:
                    for cin, cout in CONV_SHAPES:
                        rows.append(bench_conv(cin, cout, size, isa, int(t), repeats, timer))
                if block is not None:
                    x = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
                    rows.append(bench_module("hierarchical block 256->256 @64x64", *block, x, isa, int(t),
                                             max(2, repeats // 2), timer))
                if network is not None:
                    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
                    for layer, real_layers in ((NETWORK_LAYER, "fast"), (NETWORK_EXACT_LAYER, "channels_last")):
                        rows.append(bench_module(layer, *network, x, isa, int(t), network_repeats, timer,
                                                 fast_float=fast_network, real_layers=real_layers))
    finally:
        torch.set_num_threads(previous_threads)
    df = pd.DataFrame(rows, columns=COLUMNS)
    spread = {}
    if in_children:
        network_df, spread = network_rows_in_processes(threads, isas, network_repeats, timer, network_processes,
                                                       compile_baseline)
        df = pd.concat([df, network_df], ignore_index=True)
    if emulate_avx2_only:
        df = pd.concat([df, avx2_only_rows(threads, repeats, resolutions, include_block, include_network,
                                           network_repeats, timer)], ignore_index=True)
    df.attrs["network_speedups"] = spread
    if out_csv is not None:
        atomic_write_text(out_csv, merge_by_machine(df, out_csv).to_csv(index=False, float_format="%.4f"))
    return df


def network_rows_in_processes(threads: Sequence[int], isas: Sequence[str], network_repeats: int, timer: str,
                              processes: int, compile_baseline: bool = True) -> tuple[pd.DataFrame, dict]:
    """The network rows measured in ``processes`` fresh child processes: for each (layer, isa, threads) the
    row of the process with the median speed-up, and every process's speed-up (see :func:`run_bench`)."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(processes):
            out = Path(tmp) / f"network_{i}.csv"
            cmd = [sys.executable, "-m", "fa_lib.kernels.bench", "--network-only", "--out", str(out),
                   "--network-repeats", str(network_repeats), "--timer", timer, "--threads", *map(str, threads),
                   "--isas", *isas] + ([] if compile_baseline else ["--no-compile"])
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            runs.append(pd.read_csv(out))
    every = pd.concat(runs, ignore_index=True)
    chosen, spread = [], {}
    for key, group in every.groupby(["layer", "isa", "threads"], sort=False):
        ordered = group.sort_values("speedup")
        chosen.append(ordered.iloc[(len(ordered) - 1) // 2])
        spread[" | ".join(map(str, key))] = [round(float(v), 2) for v in group["speedup"]]
    return pd.DataFrame(chosen).reindex(columns=COLUMNS).reset_index(drop=True), spread


#: the machine of the rows written before each row named its own (the committed file's provenance)
LEGACY_MACHINE = {"cpu": "Intel Xeon (model not recorded)", "machine_kind": "AMX (Intel)"}


def merge_by_machine(df: pd.DataFrame, out_csv: str | os.PathLike) -> pd.DataFrame:
    """``df`` followed by the rows of ``out_csv`` measured on other machine kinds (rows without a machine
    are :data:`LEGACY_MACHINE`'s), so that each kind's latest run is kept and none is presented as another's."""
    path = Path(out_csv)
    if not path.is_file():
        return df
    old = pd.read_csv(path)
    if "binary_fused_pack_ms" not in old:  # written before the network was also run with fast real layers:
        old.loc[old["layer"] == NETWORK_LAYER, "layer"] = NETWORK_EXACT_LAYER  # its one row is the exact one
    for column, value in LEGACY_MACHINE.items():
        if column not in old:
            old[column] = value
        old[column] = old[column].fillna(value)
    kinds = set(df["machine_kind"])
    kept = old[~old["machine_kind"].isin(kinds)]
    return pd.concat([df, kept.reindex(columns=COLUMNS)], ignore_index=True)


AVX2_ONLY_LABEL = "avx2 (torch on AVX2 too)"
#: what limits torch (oneDNN convolutions and ATen kernels) to AVX2 in a child process
AVX2_ONLY_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def avx2_only_rows(threads: Sequence[int], repeats: int, resolutions: Sequence[int], include_block: bool,
                   include_network: bool, network_repeats: int, timer: str = "wall") -> pd.DataFrame:
    """The AVX2 kernel against torch limited to AVX2, measured in a child process (the limits must be set
    before torch loads): what an AVX2-only CPU would see.  Rows carry isa :data:`AVX2_ONLY_LABEL`."""
    if "avx2" not in xnor.available_isas():
        return pd.DataFrame(columns=COLUMNS)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "avx2_only.csv"
        cmd = [sys.executable, "-m", "fa_lib.kernels.bench", "--isas", "avx2", "--out", str(out),
               "--repeats", str(repeats), "--network-repeats", str(network_repeats), "--timer", timer,
               "--threads", *map(str, threads), "--resolutions", *map(str, resolutions)]
        cmd += [] if include_block else ["--no-block"]
        cmd += [] if include_network else ["--no-network"]
        subprocess.run(cmd, check=True, env={**os.environ, **AVX2_ONLY_ENV}, stdout=subprocess.DEVNULL)
        df = pd.read_csv(out)
    df["isa"] = AVX2_ONLY_LABEL
    return df


def bench_figure(df: pd.DataFrame, threads: int = 1):
    """Bar chart of speedup (incl. packing) per layer and ISA at ``threads`` threads."""
    from matplotlib.figure import Figure

    sub = df[df["threads"] == threads]
    if sub.empty:
        raise ValueError(f"no rows with threads == {threads}")
    layers = list(dict.fromkeys(sub["layer"]))
    isas = list(dict.fromkeys(sub["isa"]))
    fig = Figure(figsize=(9, 0.32 * len(layers) * len(isas) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / len(isas)
    for j, isa in enumerate(isas):
        values = [sub[(sub["layer"] == layer) & (sub["isa"] == isa)]["speedup_with_pack"].max() for layer in layers]
        ax.barh([i + j * height for i in range(len(layers))], values, height=height, label=isa)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(layers))])
    ax.set_yticklabels(layers, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("speed-up over torch float32 (incl. BN+sign+packing)")
    ax.set_title(f"Bit-packed binary convolution vs float, {threads} thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/tables/bench_xnor.csv")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--isas", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="64x64 and 4x4 only, few repeats")
    parser.add_argument("--timer", choices=sorted(_CLOCKS), default="wall")
    parser.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS))
    parser.add_argument("--network-repeats", type=int, default=8)
    parser.add_argument("--no-block", action="store_true")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--network-only", action="store_true", help="only the network rows")
    parser.add_argument("--network-processes", type=int, default=1,
                        help="measure the network rows in this many child processes (median speed-up)")
    parser.add_argument("--no-compile", action="store_true", help="the fast float baseline is not compiled")
    parser.add_argument("--emulate-avx2-only", action="store_true",
                        help="add rows of the AVX2 kernel against torch limited to AVX2 (child process)")
    args = parser.parse_args(argv)
    kwargs = dict(resolutions=[64, 4], repeats=3, network_repeats=2) if args.quick else dict(
        repeats=args.repeats, resolutions=args.resolutions, network_repeats=args.network_repeats)
    if args.network_only:
        kwargs.update(resolutions=[])
    df = run_bench(args.out, threads=args.threads, isas=args.isas, timer=args.timer,
                   include_block=not (args.no_block or args.network_only), include_network=not args.no_network,
                   emulate_avx2_only=args.emulate_avx2_only, compile_baseline=not args.no_compile,
                   network_processes=args.network_processes, **kwargs)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
