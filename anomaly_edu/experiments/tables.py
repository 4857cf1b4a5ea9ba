"""The talk's tables: which data set, protocol and image size each uses, the
talk's own numbers (``paper_tables/``), and the settings a run of one changes
(classes, seeds, ``--set method.key=value``). Lecture 1 (rows from Lectures 4-7)."""

from __future__ import annotations

__lecture__ = 1

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources

from ..data.mvtec import MVTEC_CATEGORIES, MVTEC_TEXTURES, available_mvtec, mvtec_split


@dataclass(frozen=True)
class Table:
    """One of the talk's tables. Lecture 1."""

    dataset: str
    talk_csv: str | None  # the talk's numbers, in anomaly_edu/paper_tables/ (None: the talk has no such table)
    protocol: int  # 2: one normal class, the official test set; 1: the ARAE code's split with validation;
    # 0: the course's medical split (normal images 60/20/20, every anomaly in the test set);
    # 3: MVTec AD (validation carved from train/good, the official test set, masks);
    # 4: magnetic tiles (defect-free tiles 60/20/20, every defective tile in the test set, masks)
    image_shape: tuple[int, int, int]  # (C, H, W) of the images the detectors get


TABLES = {
    "mnist": Table("mnist", "mnist_protocol2_auc.csv", protocol=2, image_shape=(1, 28, 28)),
    "fashion-mnist": Table("fashion-mnist", "fashion_mnist_protocol2_auc.csv", protocol=2, image_shape=(1, 28, 28)),
    "coil100": Table("coil100", "coil100_protocol1.csv", protocol=1, image_shape=(3, 32, 32)),
    # every medical set of anomaly_edu.data.medical that is under the data root, resized to 128x128 grey as
    # the Puzzle-AE code does (the quick profile's "images" setting makes it 64x64: anomaly_edu.profiles)
    "medical": Table("medical", "medical.csv", protocol=0, image_shape=(1, 128, 128)),
    # the talk's Table 9: Puzzle-AE's variants and aggregations (run by run_puzzle_ablation)
    "cifar10-ablation": Table("cifar10", "cifar10_puzzle_ablation.csv", protocol=2, image_shape=(3, 32, 32)),
    # Lecture 5: the same ablation on MNIST (the talk has none; ours runs where CIFAR-10 is absent)
    "mnist-ablation": Table("mnist", None, protocol=2, image_shape=(1, 28, 28)),
    # Lecture 6: CIFAR-10 under protocol 2 (the talk gives only Puzzle-AE's mean, in its summary)
    "cifar10": Table("cifar10", None, protocol=2, image_shape=(3, 32, 32)),
    # the 15 MVTec AD categories at the talk's 128x128, image AUROC, pixel AUROC and AU-PRO
    "mvtec": Table("mvtec", "mvtec_image_auc.csv", protocol=3, image_shape=(3, 128, 128)),
    # the magnetic-tile defects at 64x64 grey; pixel metrics at each tile's own size
    "magnetic-tile": Table("magnetic-tile", None, protocol=4, image_shape=(1, 64, 64)),
    # Lecture 7, the talk's Figure 10: MNIST (digit 8 by default) after a test-time attack
    "mnist-attack": Table("mnist", None, protocol=2, image_shape=(1, 28, 28)),
    # GT against Puzzle-AE over data sets (run by run_generality from the tables above)
    # (its image_shape is that of its largest images; each data set's table checks its own)
    "generality": Table("generality", "generality.csv", protocol=-1, image_shape=(3, 128, 128)),
}


# the tables that compare Puzzle-AE's variants and aggregations (run by run_puzzle_ablation)
PUZZLE_ABLATIONS = ("cifar10-ablation", "mnist-ablation")


# the generality table's columns: the talk's name of each and the table that makes our number
GENERALITY_COLUMNS = {
    "MNIST": "mnist",
    "CIFAR-10": "cifar10",
    "MVTec": "mvtec",
    "head_ct_hemorrhage": "medical",
    "brain_tumor": "medical",
}


# the names of the numbers a table can hold, as printed
METRIC_NAMES = {
    "auc": "AUC",
    "fpr_995": "FPR at TPR 99.5%",
    "f1": "F1",
    "pixel_auc": "pixel AUC",
    "au_pro": "AU-PRO",
}


# the talk's names of the medical sets (rows of medical.csv)
TALK_MEDICAL_NAMES = {"head-ct": "head_ct_hemorrhage", "brain-mri": "brain_tumor"}


# the talk's Table 3 (COIL-100): (normal classes, anomaly fraction) of each row
COIL100_SETTINGS = [(1, 0.5), (4, 0.25), (7, 0.15)]


def get_table(name: str) -> Table:
    """The table called ``name``, or a clear error listing the known ones. Lecture 1."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]


def talk_table(table: str, metric: str = "AUC") -> dict[str, dict[str, float]]:
    """The talk's numbers of one table, in percent, as {row: {case: value}}:
    the cases are the normal classes and "mean" (protocol 2), or "1-0.50",
    "4-0.25", "7-0.15" (COIL-100, whose ``metric`` may also be "F1"). The
    rows are methods, or for cifar10-ablation "PAE avg", ..., "CPAE-G min".
    The medical table's FPR (a fraction in the CSV) is returned, in percent,
    for ``metric`` "FPR at TPR 99.5%", though the talk does not say at which TPR
    it was measured. Lecture 1."""
    medical_fpr = table == "medical" and metric == METRIC_NAMES["fpr_995"]
    if get_table(table).talk_csv is None or not (medical_fpr or metric in ("AUC", "F1", "AUC_std", "F1_std")):
        return {}  # the talk has no such numbers
    text = paper_table_text(get_table(table).talk_csv)
    rows = csv.DictReader(io.StringIO(text))
    if table == "medical":  # one line per data set and metric; AUC_std is the spread over seeds
        numbers = {}
        for row in rows:
            case = {talk: ours for ours, talk in TALK_MEDICAL_NAMES.items()}[row.pop("dataset")]
            if row.pop("metric") == ("FPR" if medical_fpr else metric):
                for method, value in row.items():
                    numbers.setdefault(method, {})[case] = round(100 * float(value), 2) if medical_fpr else float(value)
        return numbers
    if table == "generality":  # one line per method, one column per data set
        return {row.pop("method"): {k: float(v) for k, v in row.items()} for row in rows}
    if table == "cifar10-ablation":  # one line per aggregation and variant
        return {f"{row.pop('variant')} {row.pop('aggregation')}": {k: float(v) for k, v in row.items()} for row in rows}
    if table != "coil100":
        return {row.pop("method"): {k: float(v) for k, v in row.items()} for row in rows}
    numbers: dict[str, dict[str, float]] = {}  # the CSV has one line per case and metric, in fractions
    for row in rows:
        case, row_metric = f"{row.pop('normal_classes')}-{row.pop('anomaly_fraction')}", row.pop("metric")
        if row_metric == metric:
            for method, value in row.items():
                numbers.setdefault(method, {})[case] = round(100 * float(value), 2)
    return numbers


def paper_table_text(name: str) -> str:
    """The text of one of the talk's tables as shipped with the package
    (``anomaly_edu/paper_tables/<name>``, CSV). Lecture 1."""
    return resources.files("anomaly_edu").joinpath("paper_tables", name).read_text()


def talk_summary(table: str) -> dict[str, float]:
    """The talk's mean AUROC (%) per method from its Puzzle-AE summary table,
    for the data set of ``table`` (empty if the summary does not cover it). Lecture 5."""
    names = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
    text = paper_table_text("puzzle_summary_mean_auc.csv")
    dataset = names.get(get_table(table).dataset)
    return {
        row["method"]: float(row["mean_auc"]) for row in csv.DictReader(io.StringIO(text)) if row["dataset"] == dataset
    }


def parse_classes(text: str) -> list[int]:
    """ "0-9" -> [0, ..., 9]; "1,3,8" -> [1, 3, 8]; "8" -> [8]. Lecture 1."""
    classes = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(p) for p in part.split("-"))
                classes.extend(range(first, last + 1))
            else:
                classes.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read classes {text!r}: use e.g. 0-9 or 1,3,8") from None
    if not classes:
        raise ValueError(f"no classes in {text!r}")
    return classes


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" or "0-2" -> [0, 1, 2]. Lecture 5."""
    try:
        return parse_classes(text)
    except ValueError:
        raise ValueError(f"cannot read seeds {text!r}: use e.g. 0,1,2 or 0-4") from None


def parse_changes(items: list[str] | None) -> dict[str, dict]:
    """["arae.epochs=30", "dsvdd.lr=1e-4"] -> {"arae": {"epochs": 30}, "dsvdd": {"lr": 0.0001}}:
    changes to a profile's settings, e.g. a shorter budget. Lecture 4."""
    changes: dict[str, dict] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        method, dot, key = name.strip().partition(".")
        if not sep or not dot or not method or not key:
            raise ValueError(f"cannot read the setting {item!r}: write METHOD.KEY=VALUE, e.g. arae.epochs=30")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text.strip()
        changes.setdefault(method, {})[key] = value
    return changes


def apply_changes(settings: dict, changes: dict[str, dict]) -> dict:
    """A copy of a profile's ``settings`` with ``changes`` (from :func:`parse_changes`)
    applied; a method or key the profile does not have is an error. Lecture 4."""
    settings = {method: dict(values) for method, values in settings.items()}
    for method, values in changes.items():
        if method not in settings:
            raise ValueError(f"the profile has no method {method!r}; known: {', '.join(sorted(settings))}")
        unknown = sorted(set(values) - set(settings[method]))
        if unknown:
            raise ValueError(
                f"{method} has no setting {', '.join(unknown)}; its settings are {', '.join(sorted(settings[method]))}"
            )
        settings[method].update(values)
    return settings


def mvtec_categories(categories: list[str] | None, root=None) -> list[str]:
    """The MVTec categories a run covers: those given (checked), or every one
    under the data root. Lecture 6."""
    if categories is None:
        categories = [name for name, here in available_mvtec(root).items() if here]
        if not categories:
            mvtec_split(MVTEC_CATEGORIES[0], root)  # raises the error that says where to get the data
    unknown = [c for c in categories if c not in MVTEC_CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown MVTec categories {', '.join(map(str, unknown))}; known: {', '.join(MVTEC_CATEGORIES)}"
        )
    return list(categories)


def case_settings(table: str, case: str, settings: dict) -> dict:
    """The settings of one case of a table: the profile's, except that on the
    MVTec textures Puzzle-AE's puzzles swap two tiles (as in its code). Lecture 6."""
    if table == "mvtec" and case in MVTEC_TEXTURES and "puzzle-ae" in settings:
        return {**settings, "puzzle-ae": {**settings["puzzle-ae"], "puzzles": "swaps"}}
    return settings
