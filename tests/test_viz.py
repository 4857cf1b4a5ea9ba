"""Figures of the lectures that read stored results: each draws the numbers it is given."""

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
