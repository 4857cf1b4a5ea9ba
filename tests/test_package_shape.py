"""The package's shape: one registry of methods, an import graph without cycles
that follows the lectures, estimator semantics, and a command line whose
errors are one clear line."""

import ast
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from recomputed import assert_rounds_to, check_evaluation, record_evaluations
from test_data import make_fake_cifar10, make_fake_coil, make_fake_mnist
from test_magnetic_tile import make_magnetic_tile_tree
from test_medical import make_head_ct
from test_mvtec import make_mvtec_tree

from anomaly_edu import profiles, training
from anomaly_edu.experiments import methods, reproduce, tables
from anomaly_edu.experiments.cli import main

PACKAGE = Path(profiles.__file__).parent
# The package's layers, lowest first. A module may import its own layer and the
# layers below it; experiments and grading both sit on the library and do not
# import each other. The command line's entry (anomaly_edu/__main__.py) and the
# package's own __init__ may import anything.
LAYERS = {
    "data": {"data"},  # anomaly_edu/data/: loading, checking and writing files
    "library": {"data", "library"},  # anomaly_edu/*.py: the lectures' concepts
    "experiments": {"data", "library", "experiments"},  # anomaly_edu/experiments/: registry, tables, runs
    "grading": {"data", "library", "grading"},  # anomaly_edu/grading/: the exercises' checks
}
ENTRY = {"__init__", "__main__"}


def module_name(path: Path) -> str:
    """ "data.medical" for anomaly_edu/data/medical.py, "data" for anomaly_edu/data/__init__.py."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in ENTRY:
        return "entry"
    first = module.split(".")[0]
    return first if first in LAYERS and first != "library" else "library"


def lecture_of(path: Path) -> int | None:
    """The module's own ``__lecture__ = N`` (the lecture that introduces it), read from its source."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__lecture__"]:
            return ast.literal_eval(node.value)
    return None


def has_code(path: Path) -> bool:
    """Whether a module holds more than a docstring (a subpackage's __init__ may hold only that)."""
    body = ast.parse(path.read_text()).body
    return len(body) > 1 or not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant))


def package_modules() -> dict[str, Path]:
    """Every module of the package, subpackages included, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_imports() -> dict[str, set[str]]:
    """{module: the package's modules it imports}, read from the source (absolute
    and relative imports, at the top or inside functions)."""
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package and name not in ENTRY else name.split(".")[:-1]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    target = [*base, *(node.module.split(".") if node.module else [])]
                elif (node.module or "").startswith("anomaly_edu."):
                    target = node.module.split(".")[1:]
                else:
                    continue
                found = ".".join(target)
                for alias in node.names:  # "from . import medical" imports a module; "from . import data_root" a name
                    child = ".".join([*target, alias.name])
                    imported.add(child if child in modules else found)
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("anomaly_edu.")}
        graph[name] = {m for m in imported if m in modules and m != name and m != "__init__"}
    return graph


def test_the_import_graph_by_layer_never_climbs():
    """Printed by layer (``pytest -s`` shows it): every module with what it
    imports. A module imports only its own layer and those below it."""
    graph = package_imports()
    order = ["data", "library", "experiments", "grading", "entry"]
    for layer in order:
        print(f"\n{layer}:")
        for module in sorted(m for m in graph if layer_of(m) == layer):
            print(f"  {module:24} <- {', '.join(sorted(graph[module])) or '-'}")
    climbs = [
        f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})"
        for module, imports in graph.items()
        if layer_of(module) != "entry"
        for imported in imports
        if layer_of(imported) not in LAYERS[layer_of(module)]
    ]
    assert not climbs, "imports that climb a layer: " + "; ".join(sorted(climbs))


def test_a_climbing_import_is_found(monkeypatch):
    """The layer check itself can fail: the library importing the grading package."""
    graph = {"metrics": {"grading.ex01"}, "grading.ex01": set()}
    monkeypatch.setattr(__import__(__name__), "package_imports", lambda: graph)
    with pytest.raises(AssertionError, match=r"metrics \(library\) imports grading.ex01 \(grading\)"):
        test_the_import_graph_by_layer_never_climbs()


def test_every_module_names_its_lecture_and_the_library_imports_only_earlier_lectures():
    modules, graph = package_modules(), package_imports()
    lectures = {name: lecture_of(path) for name, path in modules.items() if name not in ENTRY and has_code(path)}
    unnamed = sorted(name for name, lecture in lectures.items() if lecture not in range(1, 8))
    assert not unnamed, f"give these modules `__lecture__ = N` (1-7), the lecture that introduces them: {unnamed}"
    for module, imported in graph.items():
        if layer_of(module) in ("data", "library"):  # above them, a module gathers every lecture's parts
            later = sorted(m for m in imported if lectures[m] > lectures[module])
            assert not later, f"{module} (Lecture {lectures[module]}) imports {later}, taught later"


def test_no_module_is_longer_than_500_lines():
    long = {name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > 500}
    assert not long, f"split these modules (lines): {long}"


def test_the_import_graph_has_no_cycle():
    graph = package_imports()
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module) :] + [module]))
        if module in done:
            return
        on_path.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_a_cycle_is_found(monkeypatch):
    """The cycle check itself can fail."""
    monkeypatch.setattr(__import__(__name__), "package_imports", lambda: {"a": {"b"}, "b": {"a"}})
    with pytest.raises(AssertionError, match="a -> b -> a"):
        test_the_import_graph_has_no_cycle()


def test_the_method_list_exists_once():
    """Nothing else in the package spells out the list of methods or their talk rows."""
    assert list(methods.METHODS) == [
        *("ae", "dae", "ocsvm", "dsvdd", "mean-image", "pca", "arae", "arae-union", "puzzle-ae"),
        *("ae-l2", "ae-ssim", "gt"),
    ]
    for path in PACKAGE.rglob("*.py"):
        if path.stem in ("methods", "profiles"):
            continue
        text = path.read_text()
        assert '"ocsvm", "dsvdd"' not in text and '"DSVDD"' not in text, f"{path.name} lists the methods again"
    for name in profiles.PROFILES["quick"]:  # every method of a profile is in the registry, or not a detector
        assert name in methods.METHODS or name in ("cnn", "adv_cnn", "eval", "stress", "images")


# ------------------------------------------------------------------ every method on every table


TINY = {"epochs": 1, "batch_size": 8}
TINY_ATTACKS = {
    "arae": {"steps": 1},
    "arae-union": {"linf": [0.2, 0.1, 1], "l2": [2.0, 1.0, 1], "n_angles": 1},
    "puzzle-ae": {"val_size": 4, "widths": [2, 4]},
    "ae-l2": {"widths": [4, 8]},  # two halvings: any side divisible by 4 (28, 32, 64, 128)
    "ae-ssim": {"widths": [4, 8]},
    "gt": {"widths": [2, 4]},
    "pca": {"n_components": 2},  # the tiny data sets have a handful of training images
}


def tiny_changes(method: str) -> dict:
    settings = profiles.get_profile("quick")[method]
    return {key: value for key, value in {**TINY, **TINY_ATTACKS.get(method, {})}.items() if key in settings}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-data")
    make_fake_mnist(root)
    make_fake_mnist(root, name="FashionMNIST")
    make_fake_coil(root, objects=10, views=12, size=8)
    make_head_ct(root, {i: int(i >= 10) for i in range(20)})
    make_fake_cifar10(root, per_class_train=6, per_class_test=2)
    make_mvtec_tree(root, categories=("carpet",), size=8, n_train=27)  # 25 held out
    make_magnetic_tile_tree(root)
    with pytest.MonkeyPatch.context() as patch:  # torchvision would refuse the fake CIFAR-10's MD5 sums
        patch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
        yield root


# the ablation tables compare Puzzle-AE's variants only: tests/test_puzzle_ablation.py covers them
TABLES_OF_METHODS = [name for name in tables.TABLES if name not in tables.PUZZLE_ABLATIONS]


def runnable(table: str, method: str) -> bool:
    """Whether ``method`` can run on ``table``: its images suit the method, and
    Lecture 7's attack table needs the gradient of the score."""
    if table == "mnist-attack" and not hasattr(methods.METHODS[method].detector, "differentiable_score"):
        return False
    return methods.METHODS[method].accepts(tables.TABLES[table].image_shape)


REFUSED = [(table, method) for table in TABLES_OF_METHODS for method in methods.METHODS if not runnable(table, method)]
# What runs: every method once (on MNIST), every table once (with the mean image, which
# trains nothing), and the pairs whose code differs by table: each detector with anomaly maps
# on the tables with masks (pixel AUROC, AU-PRO), Puzzle-AE on an MVTec texture (its puzzles
# swap two tiles there), and the two methods of the talk's generality table.
MAP_METHODS = [name for name, method in methods.METHODS.items() if hasattr(method.detector, "score_and_map")]
RUNS = sorted(
    {("mnist", method) for method in methods.METHODS}
    | {(table, "mean-image") for table in TABLES_OF_METHODS}
    | {(table, method) for table in ("mvtec", "magnetic-tile") for method in MAP_METHODS if runnable(table, method)}
    | {("generality", "gt"), ("generality", "puzzle-ae")}
)


def test_every_method_and_every_table_is_run_or_refused():
    """Each method runs somewhere, each table runs, and every pair that cannot run is refused."""
    assert {method for _, method in RUNS} == set(methods.METHODS)
    assert {table for table, _ in RUNS} == set(TABLES_OF_METHODS)
    assert all(runnable(table, method) for table, method in RUNS)
    assert REFUSED, "no pair is refused: the refusal test below tests nothing"


@pytest.mark.parametrize("table, method", RUNS)
def test_a_method_runs_on_a_table_and_reports_scikit_learns_numbers(table, method, tiny_root, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce, "table_splits", spy(reproduce.table_splits, calls, "load"))
    classes = [1] if tables.TABLES[table].protocol == 2 else None  # the other tables have fixed rows
    run = dict(root=tiny_root, device="cpu", progress=False, changes={method: tiny_changes(method)})
    evaluated, sub_runs = record_evaluations(monkeypatch), {}
    monkeypatch.setattr(reproduce, "run_table", spy_run_table(reproduce.run_table, evaluated, sub_runs))
    result = reproduce.run_table(table, [method], classes, **run)
    check_reported_aurocs(table, result["results"][method]["auc"], evaluated, sub_runs)
    assert "load" in calls


@pytest.mark.parametrize("table, method", REFUSED)
def test_a_method_that_cannot_run_on_a_table_is_refused_before_anything_loads(table, method, tiny_root, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce, "table_splits", spy(reproduce.table_splits, calls, "load"))
    monkeypatch.setattr(training, "run_epochs", spy(training.run_epochs, calls, "train"))
    classes = [1] if tables.TABLES[table].protocol == 2 else None
    run = dict(root=tiny_root, device="cpu", progress=False, changes={method: tiny_changes(method)})
    why = f"{method} has none: leave it out" if table == "mnist-attack" else f"{method} cannot run on the {table} table"
    with pytest.raises(ValueError, match=why):
        reproduce.run_table(table, ["ae", method], classes, **run)
    assert calls == [], "a refused method must stop the run before anything loads or trains"


def spy_run_table(run_table, evaluated, sub_runs):
    """``run_table``, keeping in ``sub_runs[table]`` the AUROCs of the calls of ``evaluate`` it made."""

    def wrapper(table, *args, **kwargs):
        first = len(evaluated)
        result = run_table(table, *args, **kwargs)
        sub_runs[table] = [numbers["auc"] for _, _, numbers in evaluated[first:]]
        return result

    return wrapper


def check_reported_aurocs(table, reported, evaluated, sub_runs):
    """Every number of every evaluation is scikit-learn's on the detector's own
    scores of the split (see tests/recomputed.py), and the run reports those
    AUROCs by case; the generality table reports their mean over each data
    set's cases (the tiny data root has one medical set, head CT)."""
    assert evaluated, "the run evaluated no detector"
    for detector, split, numbers in evaluated:
        check_evaluation(detector, split, numbers, f"{table} {type(detector).__name__}")
    if table != "generality":
        assert list(reported.values()) == [numbers["auc"] for _, _, numbers in evaluated]
        return
    assert list(reported) == ["MNIST", "CIFAR-10", "MVTec", "head_ct_hemorrhage"] and len(sub_runs["medical"]) == 1
    for column, sub_table in zip(reported, ("mnist", "cifar10", "mvtec", "medical")):
        assert_rounds_to(reported[column], float(np.mean(sub_runs[sub_table])), f"generality {column}")


def spy(function, calls, name):
    def wrapper(*args, **kwargs):
        calls.append(name)
        return function(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------ estimator semantics


def tiny_detector(name, **extra):
    settings = profiles.get_profile("quick")
    settings[name].update(tiny_changes(name), **extra)
    return methods.make_detector(name, settings, seed=3, device="cpu", progress=False)


def tiny_images(n=24, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_a_second_fit_gives_the_model_a_first_fit_gives(name):
    x, other, test = tiny_images(seed=0), tiny_images(seed=1), tiny_images(8, seed=2)
    refitted = tiny_detector(name).fit(other).fit(x)
    fresh = tiny_detector(name).fit(x)
    np.testing.assert_allclose(refitted.anomaly_score(test), fresh.anomaly_score(test), rtol=1e-6)
    assert not np.allclose(
        tiny_detector(name).fit(other).anomaly_score(test), fresh.anomaly_score(test)
    )  # the data matter


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_fit_leaves_the_callers_random_numbers_alone(name):
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    expected = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    tiny_detector(name).fit(tiny_images())
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_init_stores_its_settings_as_given_and_score_needs_fit(name):
    detector = tiny_detector(name)
    params = detector.get_params()
    # every detector but the mean image (nothing in it is random) takes a seed and stores it
    assert ("seed" in params) == (name != "mean-image")
    assert params.get("seed", 3) == 3 and all(params[k] == v for k, v in tiny_changes(name).items())
    assert type(detector)(**params).get_params() == params
    with pytest.raises(RuntimeError, match="not fitted yet: call fit"):
        detector.anomaly_score(tiny_images(2))


def test_defaults_come_from_the_quick_profile():
    def plain(value):  # a profile holds lists where a signature holds tuples
        return list(value) if isinstance(value, tuple) else value

    quick = profiles.get_profile("quick")
    for name, method in methods.METHODS.items():
        params = method.detector().get_params()
        assert {key: plain(params[key]) for key in quick[name]} == quick[name], name


def test_a_given_model_is_copied_not_trained():
    from anomaly_edu.detectors import AEDetector
    from anomaly_edu.models import MLPAutoencoder

    model = MLPAutoencoder(hidden=(16, 8, 4))
    before = [p.detach().clone() for p in model.parameters()]
    detector = AEDetector(model, epochs=1, batch_size=8, progress=False, device="cpu").fit(tiny_images())
    assert detector.model is model and detector.model_ is not model
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------ the command line


def test_command_line_errors_are_one_line(tmp_path, monkeypatch, capsys):
    def torch_fails(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x10 and 784x512)\nmore detail")

    monkeypatch.setattr("anomaly_edu.experiments.cli.run_table", torch_fails)
    assert main(["reproduce", "mnist", "--methods", "ae", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: mat1 and mat2" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="mat1"):
        main(["reproduce", "mnist", "--methods", "ae", "--debug"])

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("anomaly_edu.experiments.cli.run_table", out_of_memory)
    assert main(["reproduce", "mnist", "--methods", "ae"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "batch_size" in err


def test_a_profile_without_the_method_is_refused_in_one_line(monkeypatch, capsys):
    no_arae = profiles.get_profile("quick")
    del no_arae["arae"]
    monkeypatch.setattr(reproduce, "get_profile", lambda name, dataset=None: no_arae)
    monkeypatch.setattr(reproduce, "table_splits", lambda *a, **k: pytest.fail("loaded data before refusing"))
    assert main(["reproduce", "mnist", "--methods", "ae,arae", "--classes", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no settings for arae" in err


@pytest.mark.parametrize(
    "make_out",
    [
        lambda tmp: tmp,  # a folder
        lambda tmp: tmp / "a-file" / "r.json",  # below a file
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path, make_out, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr("anomaly_edu.experiments.cli.run_table", lambda *a, **k: pytest.fail("trained first"))
    assert main(["reproduce", "mnist", "--methods", "ae", "--out", str(make_out(tmp_path))]) == 2
    assert "--out" in capsys.readouterr().err


def test_ctrl_c_is_one_line_too(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("anomaly_edu.experiments.cli.run_table", interrupted)
    assert main(["reproduce", "mnist", "--methods", "ae", "--resume", "somewhere"]) == 130
    assert capsys.readouterr().err == "interrupted (rerun the same command to resume)\n"


def test_class_docstrings_call_only_methods_that_exist():
    """A ``name(...)`` in a class's docstring is one of its methods or attributes, a name of its
    module, a builtin, or PyTorch's or math's (the docstrings quote the authors' code)."""
    import builtins
    import importlib
    import inspect
    import math
    import pkgutil
    import re

    import torch

    import anomaly_edu

    known = (builtins, math, torch, torch.nn, torch.Tensor)
    wrong = []
    for info in pkgutil.walk_packages(anomaly_edu.__path__, "anomaly_edu."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != info.name:
                continue
            for called in re.findall(r"``(\w+)\(", inspect.getdoc(cls) or ""):
                if not (hasattr(cls, called) or called in vars(module) or any(hasattr(k, called) for k in known)):
                    wrong.append(f"{info.name}.{name}: ``{called}(``")
    assert not wrong, f"docstrings name methods that do not exist: {wrong}"
