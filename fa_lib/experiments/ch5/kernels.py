"""The kernels' own benchmark read back for chapter 5: single layers at the thesis's sizes, the
bit-packed convolution against torch's float convolution of the same shape (``fa-lib bench xnor``
writes ``results/tables/bench_xnor.csv`` and ``fig_bench_xnor.png``; this chapter does not measure
them), and the speed targets the kernels were built to."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fa_lib.kernels.bench import AVX2_ONLY_LABEL, LEGACY_MACHINE
from fa_lib.results import find_result

# The speed targets of the kernels (measured against torch's float conv of the same shape, one thread):
# (what, regex of the layer rows of bench_xnor.csv, column, target, AVX2-only rows?, judge the slowest row?)
KERNEL_TARGETS = (
    ("256->128 3x3 conv at 64x64, input packed by its producer's epilogue (fused)", r"conv3x3 256->128 @64x64",
     "speedup_fused_pack", 18.0, False, False),
    ("256->128 3x3 conv at 64x64, including a separate BN+sign+packing pass", r"conv3x3 256->128 @64x64",
     "speedup_with_pack", 18.0, False, False),
    ("hierarchical block 256->256 at 64x64", r"hierarchical block 256->256 @64x64", "speedup", 15.0, False, False),
    ("whole single-hourglass binary network (fast real layers)", r"network:", "speedup", 8.0, False, False),
    ("whole network against the fastest float network (BN folded, channels-last, compiled)", r"network:",
     "speedup_vs_fast", 6.0, False, False),
    ("256->128 3x3 conv at 64x64 on an AVX2-only machine", r"conv3x3 256->128 @64x64", "speedup", 5.0, True, False),
    ("slowest 3x3 conv at 64x64 on an AVX2-only machine", r"conv3x3 .* @64x64", "speedup", 5.0, True, True),
)


def kernel_speed_table(path=None) -> pd.DataFrame | None:
    """The kernels' benchmark (``results/tables/bench_xnor.csv``: this run's results, else the
    published tree) if it has been run, else None. Speed-up of the bit-packed binary convolution over
    torch float."""
    p = Path(path) if path is not None else find_result("tables/bench_xnor.csv")
    if p is None or not p.is_file():
        return None
    return pd.read_csv(p)


def kernel_speed_figure() -> Path | None:
    """Path of the kernels' benchmark figure (``fig_bench_xnor.png``) if it has been made, else None."""
    return find_result("figures/fig_bench_xnor.png")


def with_machines(bench: pd.DataFrame) -> pd.DataFrame:
    """The benchmark with every row's ``cpu`` and ``machine_kind`` (rows written before rows named their
    machine are :data:`fa_lib.kernels.bench.LEGACY_MACHINE`'s)."""
    bench = bench.copy()
    for column, value in LEGACY_MACHINE.items():
        bench[column] = bench[column].fillna(value) if column in bench else value
    return bench


def kernel_targets_table(bench: pd.DataFrame, threads: int = 1) -> pd.DataFrame:
    """The kernels' benchmark against the speed targets, machine by machine (a number of one machine kind
    is never presented as another's): for each target, the fastest code path that machine ran (AVX2-only
    targets: the emulated AVX2-only rows, torch restricted to AVX2 as well; plain ``avx2`` rows, against
    torch on AVX-512, if the emulation was not run), at ``threads`` threads."""
    bench = with_machines(bench)
    rows = []
    for kind in dict.fromkeys(bench["machine_kind"]):
        mine = bench[bench["machine_kind"] == kind]
        machine = f"{mine['cpu'].iloc[0]} ({kind})"
        for what, layer, column, target, avx2_only, slowest in KERNEL_TARGETS:
            if column not in mine:
                continue
            sel = mine[(mine["threads"] == threads) & mine["layer"].str.match(layer) & mine[column].notna()]
            if avx2_only:
                emulated = sel["isa"] == AVX2_ONLY_LABEL
                sel = sel[emulated] if emulated.any() else sel[sel["isa"] == "avx2"]
            else:
                sel = sel[sel["isa"] != AVX2_ONLY_LABEL]
            if sel.empty:
                continue
            label = what
            if slowest:  # the worst layer on its fastest path
                per_layer = sel.loc[sel.groupby("layer")[column].idxmax()]
                best = per_layer.loc[per_layer[column].idxmin()]
                label = f"{what} ({best['layer']})"
            else:
                best = sel.loc[sel[column].idxmax()]
            binary_ms = {"speedup_with_pack": best["binary_with_pack_ms"], "speedup_vs_fast": best["binary_with_pack_ms"],
                         "speedup_fused_pack": best.get("binary_fused_pack_ms")}.get(column, best["binary_ms"])
            float_ms = best["torch_fast_ms"] if column == "speedup_vs_fast" else best["torch_ms"]
            rows.append({"machine": machine, "measurement": label, "isa": best["isa"], "threads": threads,
                         "torch float ms": float_ms, "binary ms": binary_ms, "speed-up": float(best[column]),
                         "target": target, "met": bool(best[column] >= target)})
    return pd.DataFrame(rows)


def network_profile_table(path=None) -> pd.DataFrame | None:
    """Where the packed single-hourglass network's time goes (``results/tables/bench_xnor_profile.csv``,
    written by ``fa-lib bench xnor``), milliseconds per layer kind with the exact real layers ("before")
    and with the real layers rewritten for speed ("after", ``pack_model(real_layers="fast")``), one
    thread; None if the benchmark has not been run."""
    p = Path(path) if path is not None else find_result("tables/bench_xnor_profile.csv")
    if p is None or not p.is_file():
        return None
    df = pd.read_csv(p)
    if "real_layers" not in df:
        df["real_layers"] = "channels_last"  # profiles written before the fast real layers existed
    names = {"channels_last": "exact real layers (ms)", "fast": "fast real layers (ms)"}
    table = df.pivot_table(index="part", columns="real_layers", values="ms", aggfunc="first", sort=False)
    table = table[[mode for mode in names if mode in table.columns]].rename(columns=names)
    table.loc["total"] = table.sum()
    table.attrs["machine"] = f"{df['cpu'].iloc[0]} ({df['machine_kind'].iloc[0]}), {df['isa'].iloc[0]}, 1 thread"
    return table


def cross_block_table(path=None) -> pd.DataFrame | None:
    """``pack_model(cross_block_packing=True)`` against the default (``results/tables/bench_xnor_cross_block.csv``,
    written by ``fa-lib bench xnor``: interleaved calls in one process, one thread); None if not measured."""
    p = Path(path) if path is not None else find_result("tables/bench_xnor_cross_block.csv")
    if p is None or not p.is_file():
        return None
    df = pd.read_csv(p)
    table = df.set_index("case")[["off_ms", "on_ms", "off_over_on"]].rename(
        columns={"off_ms": "separate packing pass (ms)", "on_ms": "packed by the previous block (ms)",
                 "off_over_on": "speed-up of packing in the epilogues"})
    table.attrs["machine"] = f"{df['cpu'].iloc[0]} ({df['machine_kind'].iloc[0]}), {df['isa'].iloc[0]}, 1 thread"
    return table


def one_thread_speedups(bench: pd.DataFrame) -> pd.DataFrame:
    """Speed-up of every layer of the benchmark by machine kind and ISA on one thread (layers at 8x8 and
    4x4 left out)."""
    bench = with_machines(bench)
    one_thread = bench[(bench["threads"] == 1) & ~bench["layer"].str.contains("@(?:8|4)x")]
    return one_thread.pivot_table(index="layer", columns=["machine_kind", "isa"], values="speedup", sort=False)
