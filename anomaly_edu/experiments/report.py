"""Results as the lectures print them: our numbers beside the talk's, the
attack table, MVTec's means, and one table merged from parts run separately
(by class, on several machines or sessions); and :func:`glue`, which hands a
number of the run to the page's text. Lecture 1 (merging: Lecture 4)."""

from __future__ import annotations

__lecture__ = 1

import numpy as np

from ..data.mvtec import MVTEC_CATEGORIES, MVTEC_TEXTURES
from .methods import METHODS
from .results import same_code_at
from .tables import METRIC_NAMES, PUZZLE_ABLATIONS, TABLES, get_table, talk_summary, talk_table


def merge_results(parts: list[dict]) -> dict:
    """One table from runs of the same command on different normal classes (for
    example ``--classes 0-4`` and ``--classes 5-9`` on two cores or in two GPU
    sessions). The parts must come from the same table, profile, seed, methods
    and settings, and from the same code: one commit, or commits at which the
    package's files are the same (git checks; the merged provenance then lists
    them under ``commits``). They must not share a class. Every per-class
    number (AUROC, and the FPR or F1 where the parts have them) is joined,
    means are recomputed over all classes, ``wall_time_s`` is the parts' wall
    times added up, and each part's device, date and time are kept under
    ``parts``. Lecture 4."""
    if len(parts) < 2:
        raise ValueError("merging needs at least two result files")
    if not all(isinstance(part, dict) and {"table", "results", "provenance"} <= set(part) for part in parts):
        raise ValueError("merge takes the JSON files that reproduce --out writes; one of these is not one")
    if any(part.get("table") not in TABLES or TABLES[part["table"]].protocol != 2 for part in parts):
        names = ", ".join(name for name, table in TABLES.items() if table.protocol == 2)
        raise ValueError(f"only protocol-2 tables ({names}) can be merged")
    first = parts[0]["provenance"]

    def same_run(prov):  # everything that must match, i.e. the settings without the classes
        used = {k: v for k, v in prov["settings"].items() if k not in ("classes", "cases", "stacked_training")}
        return prov.get("uncommitted_changes"), used

    for part in parts[1:]:
        if part["table"] != parts[0]["table"] or same_run(part["provenance"]) != same_run(first):
            raise ValueError(
                "the parts are not runs of the same command: their table, profile, seed, "
                "methods or settings differ, or one had uncommitted changes; rerun the odd one out "
                "at the same commit and settings"
            )
    commits = sorted({c for part in parts for c in part["provenance"].get("commits", [part["provenance"]["commit"]])})
    if len(commits) > 1 and (
        any(part["provenance"].get("uncommitted_changes") for part in parts) or not same_code_at(commits)
    ):
        short = ", ".join(commit[:10] for commit in commits)
        raise ValueError(
            f"the parts come from commits {short}, whose package code differs (or that git here cannot "
            f"compare); rerun the odd one out at the others' commit, e.g. from `git worktree add ../parts "
            f"{commits[0][:10]}`"
        )
    classes = [c for part in parts for c in part["provenance"]["settings"]["classes"]]
    shared = sorted({c for c in classes if classes.count(c) > 1})
    if shared:
        raise ValueError(f"class(es) {shared} appear in more than one part; merge runs of disjoint classes")
    classes = sorted(classes)
    results = {}
    for method in parts[0]["results"]:
        results[method] = {}
        for metric in [key for key in METRIC_NAMES if all(key in part["results"][method] for part in parts)]:
            joined = {}
            for part in parts:
                joined.update(part["results"][method][metric])
            missing = [c for c in classes if str(c) not in joined]
            if missing:
                raise ValueError(f"no {metric} of {method} for class(es) {missing} in the parts: is one edited?")
            results[method][metric] = {str(c): joined[str(c)] for c in classes}
        results[method]["mean"] = round(float(np.mean(list(results[method]["auc"].values()))), 2)
    stacked = sorted({m for part in parts for m in part["provenance"]["settings"].get("stacked_training", [])})
    merged_settings = {**first["settings"], "classes": classes}
    if "stacked_training" in merged_settings:  # cifar10-ablation has none
        merged_settings["stacked_training"] = stacked
    if "cases" in merged_settings:
        merged_settings["cases"] = [str(c) for c in classes]
    merged = {
        **first,
        "settings": merged_settings,
        "date": max(part["provenance"]["date"] for part in parts),
        "wall_time_s": round(sum(part["provenance"]["wall_time_s"] for part in parts), 1),
        "parts": [piece for part in parts for piece in _pieces(part["provenance"])],
    }
    if len(commits) > 1:
        merged["commits"] = commits  # the same package code at each (checked above)
    devices = {part["provenance"]["device"] for part in parts}
    if len(devices) > 1:
        merged["device"] = " + ".join(sorted(devices))
    return {"table": parts[0]["table"], "metric": parts[0]["metric"], "results": results, "provenance": merged}


def _pieces(prov: dict) -> list[dict]:
    """The runs a results file was made of: its own, or those of a merged file."""
    return prov.get("parts") or [
        {key: prov[key] for key in ("device", "date", "wall_time_s")} | {"classes": prov["settings"]["classes"]}
    ]


def format_comparison(result: dict) -> str:
    """A text table of our numbers beside the talk's, one pair of rows per
    method, or per row of the talk's table such as "CPAE-G avg": AUROC, and
    FPR at TPR 99.5%, F1, pixel AUROC and AU-PRO where the results have them
    (the talk's tables have only image AUROC and F1). Lecture 1 (pixel metrics: Lecture 6)."""
    used = result["provenance"]["settings"]
    cases = used.get("cases") or [str(c) for c in used["classes"]]
    changed = ", ".join(
        f"{m}.{k}={v}" for m, values in used.get("changed_from_profile", {}).items() for k, v in values.items()
    )
    lines = [
        f"{result['table']} protocol {used['protocol']}, in %, profile {used['profile']}"
        + (f" (changed: {changed})" if changed else "")
    ]
    metrics = [key for key in METRIC_NAMES if any(key in ours for ours in result["results"].values())]
    width = max(16, 7 + max(map(len, result["results"])))  # of the labels, e.g. "CPAE-G avg (ours)"
    column = max(8, 2 + max(map(len, cases)))
    for key in metrics:
        metric = METRIC_NAMES[key]
        talk = talk_table(result["table"], metric)
        head = f"{metric:<{width}}" + "".join(f"{c:>{column}}" for c in cases) + f"{'mean':>8}"
        lines += [head, "-" * len(head)]
        for method, ours in result["results"].items():
            if key not in ours:
                lines.append(f"{method + ' (ours)':<{width}}  (no {metric}: {method} makes no anomaly map)")
                continue
            values = [ours[key].get(c, float("nan")) for c in cases]
            lines.append(
                f"{method + ' (ours)':<{width}}"
                + "".join(f"{v:>{column}.1f}" for v in values)
                + f"{np.nanmean(values):>8.1f}"
            )
            if f"{key}_std" in ours:
                spread = [ours[f"{key}_std"][c] for c in cases]
                lines.append(f"{'  ± std':<{width}}" + "".join(f"{v:>{column}.2f}" for v in spread))
            row = METHODS[method].talk_row if method in METHODS else method if method in talk else None
            if row in talk:
                values = [talk[row].get(c, float("nan")) for c in cases]
                lines.append(
                    f"{row + ' (talk)':<{width}}"
                    + "".join(f"{v:>{column}.1f}" for v in values)
                    + f"{np.nanmean(values):>8.1f}"
                )
                spread = talk_table(result["table"], f"{metric}_std") if result["table"] == "medical" else {}
                if row in spread:
                    lines.append(f"{'  ± std':<{width}}" + "".join(f"{spread[row][c]:>{column}.2f}" for c in cases))
            elif key == "auc" and row in (summary := talk_summary(result["table"])):
                lines.append(
                    f"{row + ' (talk)':<{width}} mean over all ten classes {summary[row]:.1f} (no per-class numbers)"
                )
            elif key in ("auc", "f1") and get_table(result["table"]).talk_csv is not None:
                lines.append(f"{'':<{width}}(the talk has no {method} row)")
    if result["table"] == "mvtec":
        lines += mvtec_means(result)
    if result["table"] == "mnist-attack":
        lines += format_attack(result)
    for table, run in used.get("runs", {}).items():  # generality: what each column of ours covers
        covered = f"normal classes {run['classes']}" if "classes" in run else f"cases {', '.join(run['cases'])}"
        lines.append(f"ours, {table}: mean over {covered}")
    if result["table"] == "mnist-attack":
        lines.append("talk: its Figure 10 prints no numbers, only its reading (Puzzle-AE degrades least)")
    elif get_table(result["table"]).talk_csv is None and (
        result["table"] in PUZZLE_ABLATIONS or not talk_summary(result["table"])
    ):
        lines.append(f"the talk has no {result['table']} table: these are our numbers only")
    else:
        lines.append("talk: the seed talk's table; mean over the cases shown")
    if result["table"] == "medical" and "fpr_995" in metrics:
        lines.append("talk: its medical FPR does not say at which TPR; ours is at TPR 99.5% (its Figure 3's)")
    if "seeds" in used:
        lines.append(f"ours: mean over seeds {used['seeds']}; ± is the standard deviation over them")
    if result["table"] == "coil100":
        lines.append("the talk chose its F1 threshold on the test set; we choose it on validation")
    return "\n".join(lines)


def format_attack(result: dict) -> list[str]:
    """The lines of the mnist-attack table: AUROC per eps, one row per method
    and kind of attack. Lecture 7."""
    attack = result["provenance"]["settings"]["attack"]
    lines = []
    for case in result["provenance"]["settings"]["cases"]:
        first = next(iter(result["results"].values()))["attack"][case]
        eps_values = list(first["normal"])
        lines.append(
            f"AUROC after a test-time attack, normal class {case}: {first['n_normal']} normal test images and "
            f"{first['n_anomalies']} anomalies, PGD-{attack['steps']} in an L-inf ball of radius eps"
        )
        head = f"{'eps':<28}" + "".join(f"{e:>8}" for e in eps_values)
        lines += [head, "-" * len(head)]
        for method, ours in result["results"].items():
            for kind, label in (("normal", "normal attacked"), ("both", "both attacked")):
                values = ours["attack"][case][kind]
                lines.append(f"{f'{method} ({label})':<28}" + "".join(f"{values[e]:>8.1f}" for e in eps_values))
    return lines


def mvtec_means(result: dict) -> list[str]:
    """Lines with each method's mean image AUROC over the MVTec textures, the
    objects and all categories run, ours beside the talk's. Lecture 6."""
    talk, lines = talk_table("mvtec"), []
    objects = tuple(c for c in MVTEC_CATEGORIES if c not in MVTEC_TEXTURES)
    for method, ours in result["results"].items():
        row = METHODS[method].talk_row if method in METHODS else None
        for label, group in (("textures", MVTEC_TEXTURES), ("objects", objects), ("categories", MVTEC_CATEGORIES)):
            cases = [c for c in group if c in ours["auc"]]
            if cases:
                mean = np.mean([ours["auc"][c] for c in cases])
                line = f"{method}: mean image AUC over the {len(cases)} {label} run: ours {mean:.1f}"
                if row in talk:
                    line += f", talk {np.mean([talk[row][c] for c in cases]):.1f}"
                lines.append(line)
    return lines


GLUE_PREFIX = "application/papermill.record/"  # myst-nb's mark of a glued value


def glue(name: str, value) -> None:
    """Record ``value`` under ``name`` for the text of the book's page, without showing it.

    The page reads it back with myst-nb's role, for example
    ``{glue:text}`ae_fpr99:.3f```, so that a sentence quotes the number this run
    computed instead of a typed copy. The output is the one ``myst_nb.glue(name,
    value, display=False)`` writes, made here so that a notebook needs no
    myst-nb (Colab has none). ``value`` is a number or a string; numpy numbers
    are stored as Python numbers, so that the page can format them. Returns
    nothing, so that a cell ending with it shows nothing either. Lecture 1.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        raise TypeError(f"glue {name!r}: a number or a string, not {type(value).__name__}")
    from IPython.display import display

    data = {GLUE_PREFIX + "text/plain": repr(value)}
    display(data, raw=True, metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
