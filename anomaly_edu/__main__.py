"""Command line: ``python -m anomaly_edu data``, ``... reproduce`` and ``... merge``."""

from __future__ import annotations

import argparse
import json
import sys

from .data import DATA_ENV_VAR, DATASETS, available_datasets, data_root, load_dataset
from .reproduce import (TABLES, format_comparison, merge_results, parse_changes, parse_classes,
                        run_coil100_table, run_table, write_json_atomically)


def _data(args) -> int:
    root = data_root(args.data_root)
    if args.download:
        for name in args.download:
            load_dataset(name, True, root=root)
            print(f"{name}: ready under {root}")
    print(f"data root: {root}  (set {DATA_ENV_VAR} or --data-root to change it)")
    for name, present in available_datasets(root).items():
        print(f"  {name:<14} {'present' if present else 'missing'}")
    return 0


def _reproduce(args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    changes = parse_changes(args.set)
    if args.table == "coil100":  # the talk's Table 3 has fixed rows, not normal classes
        if changes:
            raise ValueError("--set is not available for coil100 yet; change anomaly_edu/profiles.py instead")
        result = run_coil100_table(methods, profile=args.profile, seed=args.seed, device=args.device,
                                   root=args.data_root, progress=not args.no_progress)
    else:
        result = run_table(args.table, methods, parse_classes(args.classes), profile=args.profile,
                           seed=args.seed, device=args.device, root=args.data_root,
                           progress=not args.no_progress, changes=changes,
                           stacked={"auto": None, "yes": True, "no": False}[args.stacked])
    print(format_comparison(result))
    if args.out:
        write_json_atomically(result, args.out)
        print(f"wrote {args.out}")
    return 0


def _merge(args) -> int:
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
    data.add_argument("--download", nargs="+", choices=list(DATASETS), help="download these first")
    data.set_defaults(run=_data)

    rep = sub.add_parser("reproduce", help="reproduce one of the talk's tables with our code")
    rep.add_argument("table", choices=list(TABLES))
    rep.add_argument("--methods", default="ae,dae,ocsvm,dsvdd", help="comma-separated, e.g. ae,dae")
    rep.add_argument("--classes", default="0-9", help="normal classes, e.g. 0-9 or 1,8 (not for coil100, "
                     "whose rows are the talk's 1, 4 and 7 normal classes)")
    rep.add_argument("--profile", default="quick", choices=["quick", "full"])
    rep.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE",
                     help="change one setting of the profile, e.g. --set arae.epochs=30 (repeatable; "
                     "recorded in the results)")
    rep.add_argument("--stacked", default="auto", choices=["auto", "yes", "no"],
                     help="train the AE, DAE and ARAE models of all classes as one stacked model "
                     "(auto: on a GPU only, where it is faster)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU if there is one)")
    rep.add_argument("--data-root", default=None)
    rep.add_argument("--out", default=None, help="write the results and their provenance to this JSON file")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.set_defaults(run=_reproduce)

    merge = sub.add_parser("merge", help="join reproduce runs of the same command on different classes")
    merge.add_argument("parts", nargs="+", help="results files written by reproduce --out")
    merge.add_argument("--out", required=True, help="the merged results file")
    merge.set_defaults(run=_merge)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
