"""report.glue: a number of the run handed to the page's text, as myst-nb's glue hands it."""

import IPython.display
import numpy as np
import pytest

from anomaly_edu.experiments import report


def test_glue_writes_the_output_myst_nb_glue_writes_and_refuses_what_a_page_cannot_format(monkeypatch):
    """report.glue needs no myst-nb, but the book's myst-nb must read its output as its own."""
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda data, **kwargs: shown.append((data, kwargs)))
    assert report.glue("fpr", np.float64(0.25)) is None  # a cell that ends with it shows nothing more
    assert shown[0][0] == {"application/papermill.record/text/plain": "0.25"}
    glue_module = pytest.importorskip("myst_nb.ext.glue")
    monkeypatch.setattr(glue_module, "ipy_display", lambda data, **kwargs: shown.append((data, kwargs)))
    glue_module.glue("fpr", 0.25, display=False)
    assert shown[0] == shown[1]
    with pytest.raises(TypeError, match="fpr"):
        report.glue("fpr", [0.25])
