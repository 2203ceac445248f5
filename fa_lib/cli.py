"""The ``fa-lib`` command line.

Sub-commands:
  reproduce   execute the chapter notebooks with papermill and collect results/ (fa_lib.reproduce)
  profiles    print every scale knob of the smoke / quick / full profiles (what each chapter runs)
  where       which module and function build a thesis table or figure, and what they train
  runs        list or clear the on-disk cache of trained networks
  landmarks   2D / 3D / 3D-full landmarks of faces in photos (FaceAligner; bundled 2D-FAN / 3D-FAN by default)
  bundle-weights  regenerate the bundled networks from the run cache of a chapter-4 reproduction
  convert-ls3dw  2D -> 3D landmark conversion of an annotated image folder (thesis 4.5), yaw-balanced subset
  bench       side-by-side benchmarks: ``render`` (synthetic faces/s), ``fan`` (FAN CPU inference
              vs the official module), ``xnor`` (bit-packed binary convolution vs torch float conv)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from fa_lib.api import add_landmarks_parser
from fa_lib.compare import write_comparison
from fa_lib.convert_ls3dw import add_convert_ls3dw_parser
from fa_lib.data_check import chapter_plan, check_data, format_report, unusable_chapters
from fa_lib.data.render import benchmark_render
from fa_lib.device import DEVICE_CHOICES
from fa_lib.experiments import registry
from fa_lib.experiments.ch4.bundle import export_bundled
from fa_lib.experiments.runs import RunCache
from fa_lib.paths import project_root
from fa_lib.experiments.train_command import CHAPTERS as TRAIN_CHAPTERS
from fa_lib.experiments.train_command import make_context
from fa_lib.experiments.train_command import train as train_chapter
from fa_lib.profiles import DEFAULT_PROFILE, PROFILE_NAMES, SECTIONS, get_profile, parse_knobs
from fa_lib.reproduce import default_results_dir, reproduce, summary
from fa_lib.results import atomic_write_text, provenance, results_dir, write_figure


def _cmd_train(args: argparse.Namespace) -> int:
    """``fa-lib train``: exit 0 when every requested network is trained (or was already), 2 on bad input."""
    try:
        knobs = parse_knobs([f"{args.chapter}.{item}" for item in args.set]).get(args.chapter, {})
        if args.list:
            ctx = make_context(args.chapter, args.profile, knobs=knobs, seed=args.seed, device=args.device,
                               data_root=args.data_root, runs_root=args.runs_root, log=None)
            for job in ctx.jobs():
                print(job)
            return 0
        done = train_chapter(args.chapter, args.jobs, args.profile, device=args.device, data_root=args.data_root,
                             seed=args.seed, runs_root=args.runs_root, knobs=knobs)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fa-lib train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fa-lib train: {len(done)} network(s) of {args.chapter} in the run cache")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    """Exit 0 when every dataset found parses and every chapter can run, 1 otherwise, 2 for a bad root."""
    try:
        reports = check_data(args.data_root, sample=args.sample)
    except FileNotFoundError as exc:
        print(f"fa-lib check-data: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"data_root": str(args.data_root), "datasets": [r.row() for r in reports],
                          "chapters": chapter_plan(reports)}, indent=1))
    else:
        print(format_report(args.data_root, reports))
    broken = [r for r in reports if r.found and not r.usable]
    return 1 if broken or unusable_chapters(reports) else 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    results_dir, executed_dir, reference = args.results_dir, args.executed_dir, None
    try:
        if args.compare is not None:
            root = project_root(args.root)
            reference = Path(args.compare) if args.compare else root / "results"
            if not (reference / "tables").is_dir():
                raise FileNotFoundError(f"--compare {reference}: no tables/ folder of results to compare with")
            # the re-run goes elsewhere: never over the results it is compared with
            if results_dir is None:
                results_dir = default_results_dir(root, args.profile)
                if results_dir.resolve() == reference.resolve():
                    results_dir = root / f"results-{args.profile}-rerun"
            if Path(results_dir).resolve() == reference.resolve():
                raise ValueError(f"--results-dir {results_dir} is the tree --compare reads: write the re-run elsewhere")
            executed_dir = executed_dir or root / "book" / f"_executed-{args.profile}-rerun"
        runs = reproduce(profile=args.profile, chapters=args.chapters, device=args.device,
                         data_root=args.data_root, seed=args.seed, root=args.root, force=args.force,
                         progress=not args.no_progress, log_output=args.log_output,
                         results_dir=results_dir, executed_dir=executed_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fa-lib reproduce: {exc}", file=sys.stderr)
        return 2
    print(summary(runs))
    if reference is not None:
        path, text = write_comparison(reference, results_dir)
        print(text)
        print(f"comparison written to {path}")
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        print(f"{len(failed)} notebook(s) failed; the results of the others were kept.", file=sys.stderr)
        return 1
    return 0


def _cmd_bundle_weights(args: argparse.Namespace) -> int:
    """Regenerate the bundled 2D-FAN / 3D-FAN (fa_lib/weights/) from a reproduction's run cache."""
    try:
        record = export_bundled(args.profile, runs_root=args.root, out_dir=args.out)
    except FileNotFoundError as exc:
        print(f"fa-lib bundle-weights: {exc}", file=sys.stderr)
        return 2
    print(f"fa-lib bundle-weights: wrote {', '.join(e['file'] for e in record['networks'].values())} and "
          "manifest.json")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    """Every knob of every section, one line each (``--json`` for the machine-readable record)."""
    names = [args.name] if args.name else list(PROFILE_NAMES)
    for name in names:
        prof = get_profile(name)
        if args.json:
            print(json.dumps(prof.to_dict(), indent=2))
            continue
        print(f"profile {prof.name}: {prof.description}")
        for section in SECTIONS:
            if args.section and section != args.section:
                continue
            print(f"  [{section}]")
            for knob, value in prof.section(section).to_dict().items():
                print(f"    {knob:<20} {value!r}")
    return 0


def _cmd_where(args: argparse.Namespace) -> int:
    """``fa-lib where 4.3``: the builder of a thesis table or figure (``--all``: every one)."""
    if args.all or not args.id:
        for b in registry.builders():
            print(f"{b.kind:<6} {b.thesis_id:<22} {b.qualname}")
        return 0
    status = 0
    for thesis_id in args.id:
        kinds = [args.kind] if args.kind else [None]
        try:
            registry.find(thesis_id, args.kind)
        except KeyError as exc:
            if "both a table and a figure" not in exc.args[0]:
                print(f"fa-lib where: {exc.args[0]}", file=sys.stderr)
                status = 2
                continue
            kinds = list(registry.KINDS)  # "5.2" is Table 5.2 and Fig. 5.2: show both
        for kind in kinds:
            print(registry.describe(registry.find(thesis_id, kind)))
    return status


def _cmd_runs(args: argparse.Namespace) -> int:
    """``fa-lib runs list`` / ``fa-lib runs clear``: the on-disk cache of trained networks."""
    cache = RunCache(args.root)
    if args.action == "list":
        entries = cache.entries(args.profile)
        if not entries:
            print(f"no cached runs under {cache.root}")
            return 0
        for e in entries:
            state = "finished" if e["finished"] else "UNFINISHED"
            wall = "" if e["wall_time_s"] is None else f"{e['wall_time_s']:>8.0f} s"
            print(f"{e['profile']:<6} {e['name']:<48} {e['key']}  {state:<10} {e['size_mb']:>8.2f} MB {wall}  "
                  f"{e['modified']}")
        total = sum(e["size_mb"] for e in entries)
        print(f"{len(entries)} run(s), {total:.1f} MB under {cache.root}")
        return 0
    selected = cache.clear(profile=args.profile, name=args.name, unfinished_only=args.unfinished, dry_run=True)
    if not selected:
        print(f"nothing to clear under {cache.root}")
        return 0
    if not args.yes:
        print(f"would remove {len(selected)} run folder(s) under {cache.root}; add --yes to remove them",
              file=sys.stderr)
        return 1
    removed = cache.clear(profile=args.profile, name=args.name, unfinished_only=args.unfinished)
    print(f"removed {len(removed)} run folder(s) from {cache.root}")
    return 0


def bench_render(args: argparse.Namespace) -> int:
    """``fa-lib bench render``: synthetic faces per second at 256 px, one process and a 2-process pool."""
    n = args.n or (10 if args.quick else 50)
    single = benchmark_render(n=n)
    print(f"1 process : {single:6.1f} images/s at 256 px")
    workers = min(2, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(benchmark_render, [2] * workers))          # warm the face-model cache
            t0 = time.perf_counter()
            list(pool.map(benchmark_render, [n] * workers, [256] * workers, range(workers)))
            total = workers * n / (time.perf_counter() - t0)
        print(f"{workers} processes: {total:6.1f} images/s at 256 px (includes pool overhead)")
    return 0


def bench_xnor(args: argparse.Namespace) -> int:
    """``fa-lib bench xnor``: bit-packed binary convs vs torch float conv, side by side in one process;
    writes results/tables/bench_xnor.csv (+ .json provenance) and results/figures/fig_bench_xnor.png."""
    # the compiled kernels are imported only by the command that needs them: a machine where the C
    # extension did not build can still use every other command
    from fa_lib.kernels import bench, xnor

    out = Path(args.out) if args.out else results_dir() / "tables" / "bench_xnor.csv"
    threads = args.threads or [1, 2]
    kwargs = dict(resolutions=[64, 4], repeats=3, network_repeats=2) if args.quick else {}
    # the AVX2-only rows (a child process with torch limited to AVX2) answer "what would an AVX2 machine see"
    # the whole network's time moves from one process to the next on a shared machine: median of three
    kwargs.setdefault("network_processes", 1 if args.quick else 3)
    df = bench.run_bench(out, threads=threads, emulate_avx2_only=True, **kwargs)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for key, speedups in df.attrs.get("network_speedups", {}).items():
        print(f"network speed-up per process ({key}): {speedups}")
    # before / after the real layers' rewrite (pack_model real_layers="channels_last" exact, "fast")
    profile = pd.concat([bench.profile_packed_network(threads=1, real_layers=mode)
                         for mode in ("channels_last", "fast")], ignore_index=True)
    print(f"where the packed network's time goes ({xnor.resolve_isa(None)}, 1 thread):")
    print(profile[["real_layers", "part", "ms", "share"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    atomic_write_text(out.with_name("bench_xnor_profile.csv"), profile.to_csv(index=False, float_format="%.4f"))
    cross = bench.bench_cross_block(calls=40 if args.quick else 200, network_calls=10 if args.quick else 40)
    print("packing the next block's input in the epilogues (cross_block_packing), on vs off, 1 thread:")
    print(cross[["case", "isa", "off_ms", "on_ms", "off_over_on"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    atomic_write_text(out.with_name("bench_xnor_cross_block.csv"), cross.to_csv(index=False, float_format="%.4f"))
    size = bench.network_model_size()
    print(f"model size of the {size['network']}: float32 state_dict {size['float32_state_dict_bytes'] / 1e6:.2f} MB, "
          f"packed file {size['packed_file_bytes'] / 1e6:.2f} MB ({size['ratio_vs_float32']:.1f}x smaller; "
          f"{size['ratio_vs_torch_save']:.1f}x against torch.save); kernels' ISA: {xnor.resolve_isa(None)}")
    record = provenance(profile="bench", dataset="random tensors of the thesis's layer shapes", seed=0,
                        extra={"isas_available": list(xnor.available_isas()), "isa_default": xnor.resolve_isa(None),
                               "threads": threads, "quick": bool(args.quick),
                               "amx_tile_unit_gmacs": xnor.amx_peak_gmacs(), "amx_min_pixels": xnor.amx_min_pixels(),
                               "network_speedups_per_process": df.attrs.get("network_speedups", {}),
                               "model_size": size})
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2, default=str) + "\n")
    write_figure(bench.bench_figure(df, threads=min(threads)), "bench_xnor", profile="bench",
                 dataset="random tensors", seed=0, caption="Binary vs float conv speed-ups")
    return 0


def _bench_target(name: str) -> Callable[[argparse.Namespace], int]:
    """Resolve a benchmark lazily so that a missing optional part gives a clear message."""
    targets = {
        "render": ("fa_lib.cli", "bench_render"),
        "fan": ("fa_lib.bench_fan", "bench_main"),
        "xnor": ("fa_lib.cli", "bench_xnor"),
    }
    module_name, func_name = targets[name]

    def run(args: argparse.Namespace) -> int:
        import importlib

        try:
            module = importlib.import_module(module_name)
            func = getattr(module, func_name)
        except (ImportError, AttributeError) as exc:
            print(f"fa-lib bench {name}: not available in this installation ({exc})", file=sys.stderr)
            return 2
        return int(func(args) or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fa-lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="execute chapter notebooks and regenerate results/")
    rep.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    rep.add_argument("--chapters", nargs="*", default=None,
                     help="notebook names or chapter numbers (default: all), e.g. metrics ch4 5")
    rep.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    rep.add_argument("--data-root", default=None, help="folder holding the real datasets, if any")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--root", default=None, help="the project checkout (default: found upwards)")
    rep.add_argument("--results-dir", default=None, help="where tables/figures go (default: <root>/results)")
    rep.add_argument("--executed-dir", default=None,
                     help="where executed notebooks go (default: <root>/book/_executed)")
    rep.add_argument("--force", action="store_true", help="ignore the cache and re-run every notebook")
    rep.add_argument("--no-progress", action="store_true")
    rep.add_argument("--log-output", action="store_true", help="stream notebook output to the log")
    rep.add_argument("--compare", nargs="?", const="", default=None, metavar="PATH",
                     help="after the run, compare its results with PATH (default: the committed results/) "
                          "cell by cell within their seed spread; the run then writes to results-<profile>/ "
                          "(or results-quick-rerun/), never over what it is compared with. Trained networks "
                          "of this machine's run cache are reused: point $FA_LIB_RUNS at an empty folder to "
                          "retrain")
    rep.set_defaults(func=_cmd_reproduce)

    add_landmarks_parser(sub)
    add_convert_ls3dw_parser(sub)

    tr = sub.add_parser("train", help="train a chapter's networks into the run cache, alone or under torchrun "
                                      "(then `reproduce` only evaluates)")
    tr.add_argument("chapter", choices=list(TRAIN_CHAPTERS), help="the chapter whose networks to train")
    tr.add_argument("jobs", nargs="*", help="which networks (default: all; --list names them)")
    tr.add_argument("--list", action="store_true", help="list the chapter's networks and whether they are trained")
    tr.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    tr.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    tr.add_argument("--data-root", default=None, help="folder holding the real datasets, if any")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--runs-root", default=None, help="run cache root (default: $FA_LIB_RUNS or <checkout>/checkpoints)")
    tr.add_argument("--set", nargs="*", default=[], metavar="KNOB=VALUE",
                    help="change knobs of the chapter's profile section, e.g. sr_iterations=2000 (Python literals)")
    tr.set_defaults(func=_cmd_train)

    check = sub.add_parser("check-data", help="which real datasets a data root holds and what each chapter will do "
                                              "with it (before any training)")
    check.add_argument("--data-root", required=True, help="folder holding the real datasets")
    check.add_argument("--sample", type=int, default=50,
                       help="faces read per dataset to check that they parse, spread over the set (0: all)")
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.set_defaults(func=_cmd_check_data)

    bundle = sub.add_parser("bundle-weights", help="regenerate the bundled 2D-FAN / 3D-FAN from the run cache "
                                                  "of a chapter-4 reproduction (never trains)")
    bundle.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    bundle.add_argument("--root", default=None, help="run cache root (default: $FA_LIB_RUNS or <checkout>/checkpoints)")
    bundle.add_argument("--out", default=None, help="output folder (default: the package's fa_lib/weights)")
    bundle.set_defaults(func=_cmd_bundle_weights)

    prof = sub.add_parser("profiles", help="print the profiles' scale knobs")
    prof.add_argument("name", nargs="?", choices=PROFILE_NAMES)
    prof.add_argument("--section", choices=list(SECTIONS), help="only this section (data, ch4, ch5, ...)")
    prof.add_argument("--json", action="store_true", help="the whole profile as JSON")
    prof.set_defaults(func=_cmd_profiles)

    where = sub.add_parser("where", help="where a thesis table/figure is built and what it trains")
    where.add_argument("id", nargs="*", help="thesis ids, e.g. 4.3, 'figure 5.7', 5.packed_inference")
    where.add_argument("--kind", choices=list(registry.KINDS), default=None)
    where.add_argument("--all", action="store_true", help="list every registered table and figure")
    where.set_defaults(func=_cmd_where)

    runs = sub.add_parser("runs", help="list or clear the on-disk cache of trained networks")
    runs.add_argument("action", choices=["list", "clear"])
    runs.add_argument("--profile", choices=PROFILE_NAMES, default=None)
    runs.add_argument("--name", default=None, help="clear only runs whose name matches this glob")
    runs.add_argument("--unfinished", action="store_true", help="clear only interrupted runs")
    runs.add_argument("--root", default=None, help="cache root (default: $FA_LIB_RUNS or <checkout>/checkpoints)")
    runs.add_argument("--yes", action="store_true", help="really remove (clear)")
    runs.set_defaults(func=_cmd_runs)

    bench = sub.add_parser("bench", help="side-by-side benchmarks")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    for name, helptext in [("render", "synthetic face rendering speed (images/s)"),
                           ("fan", "FAN CPU inference vs the official face-alignment module"),
                           ("xnor", "bit-packed binary conv vs torch float conv")]:
        b = bench_sub.add_parser(name, help=helptext)
        b.add_argument("--quick", action="store_true", help="fewer repeats")
        b.add_argument("--out", default=None, help="CSV to write (default under results/tables)")
        b.add_argument("--threads", type=int, nargs="*", default=None)
        b.add_argument("-n", type=int, default=None, help="number of items (render)")
        if name == "fan":
            b.add_argument("--no-compile", action="store_true",
                           help="leave out the torch.compile candidate (it compiles for ~40 s)")
        b.set_defaults(func=_bench_target(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
