"""Command line: ``python -m anomaly_edu data``, ``... reproduce``, ``... merge``, ``... sweep``, ``... verdicts``."""

from __future__ import annotations

__lecture__ = 1

import argparse
import json
import sys

import torch

from ..data import DATA_ENV_VAR, DATASETS, available_datasets, data_root, load_dataset
from ..data.files import atomic_file, check_writable, write_json_atomically
from ..data.magnetic_tile import available_magnetic_tiles
from ..data.mvtec import MVTEC_URL_ENV_VAR, available_mvtec, download_mvtec
from .methods import METHODS
from .report import format_comparison, merge_results
from .reproduce import run_seeds, run_table
from .results import STORED_RESULTS
from .sweep import collect_sweep, parse_shard, read_sweep_file, run_name, run_sweep, sweep_runs
from .tables import TABLES, parse_changes, parse_classes, parse_seeds
from .verdicts import REPORT_PAGE, report_page


def _data(args) -> int:
    root = data_root(args.data_root)
    if args.download:
        for name in args.download:
            if name == "mvtec":  # 4.9 GB from MVTec, checksum verified (see anomaly_edu.data.mvtec)
                download_mvtec(root, url=args.mvtec_url)
            else:
                load_dataset(name, True, root=root)
            print(f"{name}: ready under {root}")
    print(f"data root: {root}  (set {DATA_ENV_VAR} or --data-root to change it)")
    present = {
        **available_datasets(root),
        "mvtec": all(available_mvtec(root).values()),
        "magnetic-tile": available_magnetic_tiles(root),
    }
    for name, here in present.items():
        print(f"  {name:<14} {'present' if here else 'missing'}")
    return 0


# the methods a table runs when --methods is not given: the talk's rows of it
DEFAULT_METHODS = {
    "cifar10-ablation": "puzzle-ae",  # Table 9: its three variants
    "mnist-ablation": "puzzle-ae",  # the same on MNIST
    "mvtec": "ae-l2,ae-ssim,puzzle-ae",
    "magnetic-tile": "ae-l2,ae-ssim,puzzle-ae,gt",
    "generality": "gt,puzzle-ae",
    "cifar10": "puzzle-ae,gt",
    "mnist-attack": "mean-image,pca,ae,dae,arae,puzzle-ae",  # the talk's Figure 10, beside the baselines
}


def _reproduce(args) -> int:
    if args.out:
        check_writable(args.out)  # refuse now rather than after hours of training
    methods = [m.strip() for m in (args.methods or DEFAULT_METHODS.get(args.table, "ae,dae,ocsvm,dsvdd")).split(",")]
    methods = [m for m in methods if m]
    if args.table == "mvtec" and args.classes:  # MVTec's cases are its categories, by name
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    else:
        classes = parse_classes(args.classes) if args.classes else None
    if args.seeds:  # one run per seed, reported as mean ± std
        run, seeds = run_seeds, {"seeds": parse_seeds(args.seeds)}
    else:
        run, seeds = run_table, {"seed": args.seed}
    result = run(
        args.table,
        methods,
        classes=classes,
        **seeds,
        profile=args.profile,
        device=args.device,
        root=args.data_root,
        progress=not args.no_progress,
        changes=parse_changes(args.set),
        stacked={"auto": None, "yes": True, "no": False}[args.stacked],
        checkpoints=args.resume,
        checkpoint_every=args.checkpoint_every,
    )
    print(format_comparison(result))
    if args.out:
        write_json_atomically(result, args.out)
        print(f"wrote {args.out}")
    return 0


def _sweep(args) -> int:
    sweep = read_sweep_file(args.sweep)
    runs = sweep_runs(sweep)  # every method and setting checked before anything runs
    if args.collect:
        check_writable(args.out)
        collected = {"sweep": sweep, **collect_sweep(runs, args.collect)}
        write_json_atomically(collected, args.out)
        print(f"{len(collected['runs'])} of {len(runs)} runs collected into {args.out}")
        for run in collected["missing"]:
            print(f"  missing: {run_name(run)}")
        return 1 if collected["missing"] else 0
    shard = parse_shard(args.shard) if args.shard else None
    options = {"device": args.device, "root": args.data_root, "progress": not args.no_progress}
    done = run_sweep(runs, args.out, shard=shard, **options)
    print(f"{len(done['ran'])} runs done, {len(done['skipped'])} already there (skipped), results in {args.out}")
    return 0


def _verdicts(args) -> int:
    page = report_page(args.results)
    if args.out:
        with atomic_file(args.out) as f:
            f.write(page)
        print(f"written: {args.out}")
    else:
        print(page)
    return 0


def _merge(args) -> int:
    check_writable(args.out)
    parts = []
    for path in args.parts:
        with open(path) as f:
            try:
                parts.append(json.load(f))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not a results file (bad JSON: {err})") from None
    result = merge_results(parts)
    print(format_comparison(result))
    write_json_atomically(result, args.out)
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anomaly_edu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="list the data sets present under the data root")
    data.add_argument("--data-root", default=None, help=f"default: ${DATA_ENV_VAR} or ~/.cache/anomaly_edu")
    data.add_argument("--download", nargs="+", choices=[*DATASETS, "mvtec"], help="download these first")
    data.add_argument(
        "--mvtec-url", default=None, help=f"where to download MVTec AD from (default: ${MVTEC_URL_ENV_VAR} or MVTec's)"
    )
    data.set_defaults(run=_data)

    rep = sub.add_parser("reproduce", help="reproduce one of the talk's tables with our code")
    rep.add_argument("table", choices=list(TABLES))
    rep.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated, from: {', '.join(METHODS)} (default: ae,dae,ocsvm,dsvdd; "
        + "; ".join(f"for {table}, {methods}" for table, methods in DEFAULT_METHODS.items())
        + ")",
    )
    rep.add_argument(
        "--classes",
        default=None,
        help="normal classes, e.g. 0-9 (the default) or 1,8 (for generality: of MNIST and CIFAR-10); "
        "for mvtec, categories, e.g. bottle,carpet (default: all under the data root); not for coil100, "
        "medical and magnetic-tile, whose rows are fixed",
    )
    rep.add_argument("--profile", default="quick", choices=["quick", "full"])
    rep.add_argument(
        "--set",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="change one setting of the profile, e.g. --set arae.epochs=30 (repeatable; recorded in the results)",
    )
    stackable = ", ".join(name for name, method in METHODS.items() if method.stackable)
    rep.add_argument(
        "--stacked",
        default="auto",
        choices=["auto", "yes", "no"],
        help=f"train the models of all classes as one stacked model ({stackable}; "
        "auto: on a GPU only, where it is faster, and not with --resume)",
    )
    rep.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="keep checkpoints in DIR; after an interruption, rerun the same command to go on where it stopped",
    )
    rep.add_argument("--checkpoint-every", type=int, default=1, metavar="N", help="with --resume: every N epochs")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument(
        "--seeds", default=None, help="e.g. 0,1,2: one run per seed, reported as mean ± std (instead of --seed)"
    )
    rep.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU if there is one)")
    rep.add_argument("--data-root", default=None)
    rep.add_argument("--out", default=None, help="write the results and their provenance to this JSON file")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.set_defaults(run=_reproduce)

    merge = sub.add_parser("merge", help="join reproduce runs of the same command on different classes")
    merge.add_argument("parts", nargs="+", help="results files written by reproduce --out")
    merge.add_argument("--out", required=True, help="the merged results file")
    merge.set_defaults(run=_merge)

    sweep = sub.add_parser("sweep", help="run many small experiments (seeds, budgets, settings), resumably")
    sweep.add_argument("sweep", help="the sweep file (JSON; see anomaly_edu/experiments/sweep.py)")
    sweep.add_argument("--out", required=True, help="the folder of the runs' results (with --collect: a file)")
    sweep.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N, e.g. 2/4")
    sweep.add_argument(
        "--collect", nargs="+", metavar="DIR", help="join the results in these folders into the --out file"
    )
    sweep.add_argument("--device", default=None)
    sweep.add_argument("--data-root", default=None)
    sweep.add_argument("--no-progress", action="store_true")
    sweep.set_defaults(run=_sweep)

    verdicts = sub.add_parser("verdicts", help="the reproduction report: each claim of the talk with its verdict")
    verdicts.add_argument("--results", default=str(STORED_RESULTS), help="the stored results folder (results/)")
    verdicts.add_argument("--out", default=None, help=f"write the page here (the book's: {REPORT_PAGE})")
    verdicts.set_defaults(run=_verdicts)

    for command in (data, rep, merge, sweep, verdicts):
        command.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # Ctrl-C: nothing half-written is left (results are written atomically)
        print(
            "interrupted" + (" (rerun the same command to resume)" if getattr(args, "resume", None) else ""),
            file=sys.stderr,
        )
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 2


def error_line(err: Exception) -> str:
    """One line that says what went wrong and what to do, instead of a traceback."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, torch.OutOfMemoryError):
        return (
            "out of memory on the device; lower the batch size (e.g. --set ae.batch_size=64) "
            "or run on the CPU with --device cpu"
        )
    if isinstance(err, (ValueError, OSError)):  # bad input: the message says what to fix
        return first
    return f"{type(err).__name__}: {first} (run again with --debug for the traceback)"
