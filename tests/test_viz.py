"""Figures of the lectures that read stored results: each draws the numbers it is given."""

import pytest

from anomaly_edu import viz


def test_the_attack_figure_draws_each_detectors_numbers_and_the_baselines_in_grey():
    numbers = {
        "mean-image": {"normal": {"0": 80.0, "0.1": 40.0}, "both": {"0": 80.0, "0.1": 10.0}},
        "ae": {"normal": {"0": 90.0, "0.1": 60.0}, "both": {"0": 90.0, "0.1": 20.0}},
    }
    figure = viz.attack_figure(numbers)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {
        "mean-image (baseline), normal attacked",
        "mean-image (baseline), both attacked",
        "ae, normal attacked",
        "ae, both attacked",
    }
    assert list(traces["ae, both attacked"].y) == [90.0, 20.0]
    assert list(traces["ae, both attacked"].x) == [0.0, 0.1]
    assert traces["ae, both attacked"].line.dash == "dash"
    grey = traces["mean-image (baseline), normal attacked"].line.color
    assert grey == traces["mean-image (baseline), both attacked"].line.color
    assert grey != traces["ae, normal attacked"].line.color and grey.startswith("#") and len(set(grey[1:])) == 1


def test_method_bars_draw_each_mean_with_the_baselines_in_grey_and_the_better_one_as_a_line():
    result = {
        "results": {
            "mean-image": {"mean": 80.0},
            "pca": {"mean": 86.0},
            "ae": {"mean": 90.0},
            "puzzle-ae": {"mean": 84.0},
        }
    }
    figure = viz.method_bars(result)
    (bars,) = figure.data
    assert list(bars.x) == ["mean-image", "pca", "ae", "puzzle-ae"] and list(bars.y) == [80.0, 86.0, 90.0, 84.0]
    colours = list(bars.marker.color)
    assert all(len(set(c[1:])) == 1 for c in colours[:2])  # greys for the baselines
    assert not any(len(set(c[1:])) == 1 for c in colours[2:])
    (line,) = figure.layout.shapes
    assert line.y0 == line.y1 == 86.0


def test_the_fpr_figure_draws_each_methods_fpr_per_class_with_the_baselines_in_grey():
    result = {
        "results": {
            "mean-image": {"auc": {"0": 96.8, "1": 98.7}, "fpr_995": {"0": 35.1, "1": 18.8}, "mean": 97.7},
            "arae": {"auc": {"0": 99.9, "1": 99.9}, "fpr_995": {"0": 2.8, "1": 1.2}, "mean": 99.9},
            "ocsvm": {"auc": {"0": 99.5, "1": 99.9}, "mean": 99.7},  # a method without the FPR is left out
        }
    }
    figure = viz.fpr_by_class_figure(result)
    assert [bars.name for bars in figure.data] == ["mean-image", "arae"]
    baseline, arae = figure.data
    assert list(baseline.x) == ["0", "1"] and list(baseline.y) == [35.1, 18.8]
    assert list(arae.y) == [2.8, 1.2]
    assert len(set(baseline.marker.color[1:])) == 1 and len(set(arae.marker.color[1:])) > 1  # grey, colour
    assert figure.layout.barmode == "group" and "lower is better" in figure.layout.yaxis.title.text
    with pytest.raises(ValueError, match="no FPR at TPR 99.5%"):
        viz.fpr_by_class_figure({"results": {"ae": {"auc": {"0": 99.0}, "mean": 99.0}}})
