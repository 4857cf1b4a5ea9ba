"""Figures: plotly for plots and image grids, ipywidgets for one interactive
control. Introduced in Lecture 1; Lecture 6 adds defect overlays
(:func:`overlay`, :func:`picture_grid`) and PRO curves (:func:`pro_figure`);
Lecture 7 adds AUROC under attack (:func:`attack_figure`), the spread over
seeds (:func:`spread_figure`) and AUROC against a setting (:func:`sweep_figure`).
Lectures 4 and 5 draw a stored budget curve (:func:`budget_curve_figure`).

Call :func:`setup_notebook` once at the top of a notebook: it selects a
plotly renderer that embeds plotly.js in the notebook (so figures show in the
rendered book and offline) and does not load MathJax from the internet.
"""

from __future__ import annotations

__lecture__ = 1

import base64

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import NotebookRenderer
from scipy import ndimage

from .metrics import au_pro, confusion_counts, f1_at_threshold, pro_curve, roc_curve_data, to_numpy


class _OfflineNotebookRenderer(NotebookRenderer):
    """plotly's "notebook" renderer, minus the MathJax script it adds to each figure."""

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(
            fig_dict,
            config=self.config,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=450,
            validate=False,
        )
        return {"text/html": html}


def setup_notebook() -> None:
    """Make plotly figures render inside notebooks and the book, offline. Lecture 1."""
    pio.renderers["course"] = _OfflineNotebookRenderer()
    pio.renderers.default = "course"


def roc_figure(curves: dict, title: str = "ROC curves") -> go.Figure:
    """ROC curves of several detectors: ``curves`` maps a name to
    ``(labels, scores)``. Lecture 1."""
    fig = go.Figure()
    for name, (labels, scores) in curves.items():
        roc = roc_curve_data(labels, scores)
        fpr, tpr = _corners(roc["fpr"], roc["tpr"])
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=name))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="grey")))
    fig.update_layout(title=title, xaxis_title="false-positive rate", yaxis_title="true-positive rate", height=450)
    return fig


def _corners(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the ROC points that lie on a straight line between their neighbours
    (the drawn curve is the same, the figure much smaller)."""
    bends = np.r_[True, ~np.isclose(np.diff(fpr, 2), 0, atol=1e-12) | ~np.isclose(np.diff(tpr, 2), 0, atol=1e-12), True]
    return fpr[bends], tpr[bends]


def _thinned(x: np.ndarray, y: np.ndarray, points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A curve rising in both x and y, at ``points`` evenly spaced steps of x +
    y (a curve of millions of corners drawn with a thousand; for the eye only)."""
    if x.size <= points:
        return x, y
    along = x + y
    steps = np.linspace(along[0], along[-1], points)
    return np.interp(steps, along, x), np.interp(steps, along, y)


def score_histogram(labels, scores, title: str = "Anomaly scores", threshold: float | None = None) -> go.Figure:
    """Overlaid histograms of the scores of normal and anomalous images, with an
    optional threshold line. Lecture 1."""
    labels, scores = to_numpy(labels).ravel(), to_numpy(scores).ravel()
    fig = go.Figure()
    for value, name in ((0, "normal"), (1, "anomalous")):
        fig.add_trace(
            go.Histogram(x=scores[labels == value], name=name, opacity=0.6, histnorm="probability density", nbinsx=60)
        )
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", annotation_text="threshold")
    fig.update_layout(barmode="overlay", title=title, xaxis_title="score", yaxis_title="density", height=400)
    return fig


def image_grid(rows: dict, title: str = "", max_columns: int = 10) -> go.Figure:
    """Show images as a grid: ``rows`` maps a row name (e.g. "input",
    "reconstruction") to a tensor (N, C, H, W) in [0, 1]. Lecture 1."""
    if not rows:
        raise ValueError("image_grid needs at least one row of images")
    strips = []
    for images in rows.values():
        images = to_numpy(images)[:max_columns]
        if images.ndim != 4:
            raise ValueError(f"each row must be (N, C, H, W) images, got shape {images.shape}")
        images = np.clip(images, 0, 1).transpose(0, 2, 3, 1)  # N, H, W, C
        strips.append(np.concatenate(list(images), axis=1))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    mosaic = np.concatenate(strips, axis=0)
    if mosaic.shape[2] == 1:
        mosaic = np.repeat(mosaic, 3, axis=2)
    height = strips[0].shape[0]
    fig = go.Figure(go.Image(z=(mosaic * 255).astype(np.uint8)))
    fig.update_yaxes(tickvals=[height * (i + 0.5) for i in range(len(rows))], ticktext=list(rows), showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_layout(title=title, height=120 + 70 * len(rows), margin=dict(l=120, r=20, t=50, b=20))
    return fig


def heatmap_grid(
    maps, titles=None, title: str = "", columns: int | None = None, colorscale: str = "RdBu_r"
) -> go.Figure:
    """Show several 2-D maps (e.g. input gradients) in a grid with one shared
    colour scale, symmetric around zero. Lecture 3."""
    from plotly.subplots import make_subplots

    maps = [to_numpy(m).squeeze() for m in maps]
    columns = columns or len(maps)
    rows = (len(maps) + columns - 1) // columns
    limit = max(float(np.abs(m).max()) for m in maps) or 1.0
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)
    for i, m in enumerate(maps):
        fig.add_trace(
            go.Heatmap(z=m[::-1], zmin=-limit, zmax=limit, colorscale=colorscale, showscale=i == 0),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title, height=80 + 220 * rows)
    return fig


def threshold_slider(labels, scores):
    """An ipywidgets slider over thresholds that shows the confusion counts and
    the F1 of "anomaly when score >= threshold". Lecture 1."""
    import ipywidgets as widgets

    labels, scores = to_numpy(labels).ravel(), to_numpy(scores).ravel()
    low, high = float(np.quantile(scores, 0.01)), float(np.quantile(scores, 0.99))
    slider = widgets.FloatSlider(
        value=float(np.median(scores)),
        min=low,
        max=high,
        step=(high - low) / 200,
        description="threshold",
        continuous_update=True,
        readout_format=".3g",
        layout=widgets.Layout(width="600px"),
    )
    report = widgets.HTML()

    def update(change=None):
        t = slider.value
        c = confusion_counts(labels, scores, t)
        f1 = f1_at_threshold(labels, scores, t)
        report.value = (
            f"<b>flagged as anomalies</b>: {c['tp']} true, {c['fp']} false &nbsp;|&nbsp; "
            f"<b>passed as normal</b>: {c['tn']} true, {c['fn']} missed &nbsp;|&nbsp; "
            f"<b>F1</b> = {f1:.3f}"
        )

    slider.observe(update, names="value")
    update()
    return widgets.VBox([slider, report])


def _png(image: np.ndarray, scale: int = 6) -> bytes:
    """A (C, H, W) image in [0, 1] as PNG bytes, enlarged ``scale`` times."""
    import io

    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    picture = Image.fromarray(pixels)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def attack_slider(model, x, y, eps_values, attack):
    """An ipywidgets slider over eps that shows the attacked image, the
    perturbation (magnified to the full grey range) and the model's prediction.
    ``attack(model, x, y, eps)`` attacks one image ``x`` (1, C, H, W); all eps
    values are attacked up front, so moving the slider is instant. Lecture 2."""
    import ipywidgets as widgets
    import torch

    eps_values = [float(e) for e in eps_values]
    frames = []
    for eps in eps_values:
        x_adv = attack(model, x, y, eps)
        with torch.no_grad():
            probs = torch.softmax(model(x_adv), 1)[0]
        delta = (x_adv - x)[0].detach().cpu().numpy()
        magnified = 0.5 + delta / (2 * max(np.abs(delta).max(), 1e-12))
        frames.append(
            (
                _png(x_adv[0].detach().cpu().numpy()),
                _png(magnified),
                f"eps = {eps:.3f}: predicted <b>{int(probs.argmax())}</b> "
                f"({100 * probs.max().item():.1f}%), true label {int(y[0])}",
            )
        )
    slider = widgets.SelectionSlider(
        options=[(f"{e:.3f}", i) for i, e in enumerate(eps_values)],
        value=0,
        description="eps",
        layout=widgets.Layout(width="500px"),
    )
    adversarial, noise, caption = widgets.Image(format="png"), widgets.Image(format="png"), widgets.HTML()

    def update(change=None):
        adversarial.value, noise.value, caption.value = frames[slider.value]

    slider.observe(update, names="value")
    update()
    return widgets.VBox(
        [
            slider,
            widgets.HBox(
                [
                    widgets.VBox([widgets.HTML("attacked image"), adversarial]),
                    widgets.VBox([widgets.HTML("perturbation (magnified)"), noise]),
                ]
            ),
            caption,
        ]
    )


def overlay(image, mask=None, score_map=None, vmax: float | None = None) -> np.ndarray:
    """An RGB picture (H, W, 3), uint8, of a grey ``image`` (H, W) in [0, 1]:
    the anomaly ``score_map`` (same size) as a red-to-yellow tint, from 0 at
    zero to full at ``vmax`` (default: the map's 99th percentile), and the
    outline of the defect ``mask`` in green. Lecture 6."""
    grey = np.clip(to_numpy(image).astype(np.float64), 0, 1)
    picture = np.repeat(grey[..., None], 3, axis=2)
    if score_map is not None:
        score_map = to_numpy(score_map).astype(np.float64)
        top = vmax if vmax is not None else float(np.percentile(score_map, 99)) or 1.0
        heat = np.clip(score_map / top, 0, 1)[..., None]
        tint = np.stack([np.ones_like(grey), np.clip(2 * heat[..., 0] - 1, 0, 1), np.zeros_like(grey)], axis=2)
        picture = (1 - 0.6 * heat) * picture + 0.6 * heat * tint
    if mask is not None:
        mask = to_numpy(mask).astype(bool)
        inner = ndimage.binary_erosion(mask, iterations=2, border_value=0)
        picture[mask & ~inner] = (0.1, 0.9, 0.2)
    return (picture * 255).round().astype(np.uint8)


def _jpeg_source(picture: np.ndarray) -> str:
    """An RGB picture (H, W, 3), uint8, as a JPEG data URI: photos take a
    small fraction of the room their pixels take as numbers in a figure."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def picture_grid(pictures: list[list[np.ndarray]], row_titles: list[str], title: str = "") -> go.Figure:
    """RGB pictures (each (H, W, 3), sizes may differ) in a grid, one list per
    row, each with its own proportions; the figure takes the width of the page.
    Lecture 6."""
    from plotly.subplots import make_subplots

    columns = max(len(row) for row in pictures)
    fig = make_subplots(
        rows=len(pictures), cols=columns, row_titles=row_titles, horizontal_spacing=0.01, vertical_spacing=0.03
    )
    for r, row in enumerate(pictures):
        for c, picture in enumerate(row):
            fig.add_trace(go.Image(source=_jpeg_source(picture)), row=r + 1, col=c + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False)
    fig.update_layout(title=title, height=80 + 200 * len(pictures), margin=dict(l=10, r=40, t=60, b=10))
    return fig


def pro_figure(curves: dict, max_fpr: float = 0.3, title: str = "PRO curves") -> go.Figure:
    """PRO curves of several maps: ``curves`` maps a name to ``(masks, maps)``;
    the shaded band is the part of the FPR axis that AU-PRO integrates. Each
    curve is drawn through a thousand points along it (AU-PRO, in the legend,
    is exact). Lecture 6."""
    fig = go.Figure()
    for name, (masks, maps) in curves.items():
        curve = pro_curve(masks, maps)
        fpr, pro = _thinned(curve["fpr"], curve["pro"])
        fig.add_trace(
            go.Scatter(x=fpr, y=pro, mode="lines", name=f"{name} (AU-PRO {au_pro(masks, maps, max_fpr):.3f})")
        )
    fig.add_vrect(x0=0, x1=max_fpr, fillcolor="grey", opacity=0.12, line_width=0)
    fig.update_layout(
        title=title, xaxis_title="false-positive rate (normal pixels)", yaxis_title="per-region overlap", height=450
    )
    return fig


def attack_figure(
    attack: dict[str, dict],
    title: str = "AUROC under a test-time attack",
    baselines: tuple[str, ...] = ("mean-image", "pca"),
) -> go.Figure:
    """AUROC (%) against eps, one colour per detector: ``attack`` maps a name to
    :func:`~anomaly_edu.score_attacks.auroc_under_attack`'s numbers; a solid line with
    only the normal images attacked, a dashed one with both kinds. The names in
    ``baselines`` are drawn in grey, with thinner lines. Lecture 7."""
    fig = go.Figure()
    greys = iter(_GREYS * len(attack))
    models = iter(_COLOURS * len(attack))
    for name, numbers in attack.items():
        is_baseline = name in baselines
        colour = next(greys) if is_baseline else next(models)
        for kind, dash, label in (("normal", "solid", "normal attacked"), ("both", "dash", "both attacked")):
            eps = [float(e) for e in numbers[kind]]
            fig.add_trace(
                go.Scatter(
                    x=eps,
                    y=list(numbers[kind].values()),
                    mode="lines+markers",
                    name=f"{name}{' (baseline)' if is_baseline else ''}, {label}",
                    line=dict(color=colour, dash=dash, width=1.5 if is_baseline else 2.5),
                )
            )
    fig.add_hline(y=50, line_dash="dot", line_color="grey", annotation_text="chance")
    fig.update_layout(title=title, xaxis_title="eps (L-inf, pixels in [0, 1])", yaxis_title="AUROC (%)", height=450)
    return fig


def spread_figure(groups: dict[str, list[float]], title: str = "AUROC over seeds") -> go.Figure:
    """One point per run and the mean ± one standard deviation, per detector:
    ``groups`` maps a name to its AUROCs. Lecture 7."""
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        values = np.asarray(values, dtype=float)
        colour = _COLOURS[i % len(_COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=[name] * len(values),
                y=values,
                mode="markers",
                name=f"{name}: each seed",
                marker=dict(color=colour, size=8, opacity=0.6),
            )
        )
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        fig.add_trace(
            go.Scatter(
                x=[name],
                y=[values.mean()],
                mode="markers",
                name=f"{name}: mean ± std",
                marker=dict(color=colour, size=14, symbol="line-ew-open", line=dict(width=3)),
                error_y=dict(type="data", array=[spread], width=12),
            )
        )
    fig.update_layout(title=title, yaxis_title="AUROC (%)", height=450, showlegend=False)
    return fig


def sweep_figure(
    groups: dict[str, dict], x_title: str, title: str = "", log_x: bool = False, names: dict | None = None
) -> go.Figure:
    """Mean AUROC (%) against a setting, one line per detector, with error bars
    of one standard deviation over seeds where there are several: ``groups`` is
    :func:`~anomaly_edu.experiments.sweep.aurocs_by`'s ``{name: {value: [AUROC, ...]}}``;
    ``names`` relabels values (e.g. None -> the full training set's size). Lecture 7."""
    fig = go.Figure()
    for i, (name, by_value) in enumerate(groups.items()):
        points = sorted(((names or {}).get(v, v), np.asarray(a, dtype=float)) for v, a in by_value.items())
        fig.add_trace(
            go.Scatter(
                x=[v for v, _ in points],
                y=[a.mean() for _, a in points],
                error_y=dict(type="data", array=[a.std(ddof=1) if len(a) > 1 else 0.0 for _, a in points]),
                mode="lines+markers",
                name=name,
                line=dict(color=_COLOURS[i % len(_COLOURS)]),
            )
        )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="AUROC (%)", height=450)
    if log_x:  # ticks at the values swept (plotly's own log ticks label 20, 30, ... as "2", "3", ...)
        fig.update_xaxes(type="log", tickvals=sorted({x for trace in fig.data for x in trace.x}))
    return fig


def budget_curve_figure(curve: dict) -> go.Figure:
    """Test AUROC (%) after each number of epochs, one line per method, and the
    baselines as dotted lines: ``curve`` is a file written by
    ``benchmarks/budget_curve.py`` (e.g. ``results.read_stored("budget_curve_digit8.json")``).
    Lectures 4 and 5."""
    fig = go.Figure()
    for i, (name, points) in enumerate(curve["results"].items()):
        fig.add_trace(
            go.Scatter(
                x=[point["epochs"] for point in points],
                y=[point["auroc"] for point in points],
                mode="lines+markers",
                name=name.upper(),
                line=dict(color=_COLOURS[i % len(_COLOURS)]),
                showlegend=True,  # also for a curve of one method
            )
        )
    for name, baseline in curve["baselines"].items():
        fig.add_hline(y=baseline["auroc"], line_dash="dot", line_color="grey", annotation_text=f"{name} (baseline)")
    normal_class = curve["provenance"]["settings"]["normal_class"]
    fig.update_layout(
        title=f"Digit {normal_class}: test AUROC after each number of epochs (the quick settings otherwise)",
        xaxis_title="epochs (log scale)",
        yaxis_title="AUROC (%)",
        height=450,
    )
    epochs = sorted({point["epochs"] for points in curve["results"].values() for point in points})
    fig.update_xaxes(type="log", tickvals=epochs)  # ticks at the stored points only
    return fig


def method_bars(
    result: dict,
    title: str = "Mean AUROC per method",
    baselines: tuple[str, ...] = ("mean-image", "pca"),
) -> go.Figure:
    """One bar per method of a stored table (a file written by ``reproduce``):
    its mean AUROC over the table's cases, the ``baselines`` in grey and the
    better of them also as a dotted line, so that a glance says which methods
    beat it. Lectures 1, 5, 6 and 7 open with one."""
    names = list(result["results"])
    means = [result["results"][name]["mean"] for name in names]
    greys, models = iter(_GREYS * len(names)), iter(_COLOURS * len(names))
    colours = [next(greys) if name in baselines else next(models) for name in names]
    fig = go.Figure(go.Bar(x=names, y=means, marker_color=colours, text=[f"{m:.1f}" for m in means]))
    best = max((result["results"][name]["mean"] for name in names if name in baselines), default=None)
    if best is not None:
        fig.add_hline(
            y=best,
            line_dash="dot",
            line_color="grey",
            annotation_text="the better baseline",
            annotation_position="top left",
        )
    low = min(means)
    fig.update_layout(title=title, yaxis_title="mean AUROC (%)", height=400, showlegend=False)
    fig.update_yaxes(range=[max(0.0, low - 10), 100])
    return fig


def fpr_by_class_figure(
    result: dict,
    title: str = "FPR at TPR 99.5% per normal class (the talk's Figure 3, right)",
    baselines: tuple[str, ...] = ("mean-image", "pca"),
) -> go.Figure:
    """Grouped bars of a protocol-2 table that holds the false-positive rate at
    a true-positive rate of 99.5% (``fpr_995``, written by ``reproduce``): one
    group per normal class, one bar per method, the ``baselines`` in grey. Lower
    is better: the share of normal test images flagged when 99.5% of the
    anomalies are caught. Lecture 4."""
    names = [name for name in result["results"] if "fpr_995" in result["results"][name]]
    if not names:
        raise ValueError(
            "this table holds no FPR at TPR 99.5% (fpr_995): make it again with the current "
            "`reproduce` (protocol 2 records it beside AUROC)"
        )
    greys, models = iter(_GREYS * len(names)), iter(_COLOURS * len(names))
    fig = go.Figure()
    for name in names:
        values = result["results"][name]["fpr_995"]
        colour = next(greys) if name in baselines else next(models)
        fig.add_bar(x=list(values), y=list(values.values()), name=name, marker_color=colour)
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="normal class",
        yaxis_title="FPR at TPR 99.5% (%), lower is better",
        height=420,
    )
    fig.update_xaxes(type="category")
    return fig


# plotly's default colours, so that a detector keeps its colour in every figure of a lecture
_COLOURS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]
_GREYS = ["#555555", "#999999"]  # the trivial baselines
