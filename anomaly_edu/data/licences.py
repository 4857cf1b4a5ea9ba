"""Where each data set of the course comes from, and under which licence.

Lecture 1. The course's code is MIT-licensed and its prose CC BY 4.0, but the
data sets keep their owners' terms, and so do the models and results made from
them. This registry is the one place those terms are written down: the book's
page "Data and their licences" (book/data_licences.md) shows it as a table, and
``scripts/store_models.py`` copies a data set's entry into each stored model's
manifest entry (``data_licence``).

Only a licence that the source itself states is given. Where the source states
none that we could verify, the entry says so (:data:`NO_LICENCE_STATED`) rather
than guess.
"""

from __future__ import annotations

__lecture__ = 1

from dataclasses import dataclass

NO_LICENCE_STATED = "no licence stated by the source; used for research/teaching"


@dataclass(frozen=True)
class DataLicence:
    """One data set: what it is, where it comes from and its licence. Lecture 1."""

    title: str  # the data set's usual name
    source: str  # where its owners publish it
    licence: str  # the licence the source states, or NO_LICENCE_STATED
    licence_url: str = ""  # the licence's text, where there is one
    note: str = ""  # what the source asks for besides (a citation, non-commercial use)


DATA_LICENCES = {
    "mnist": DataLicence(
        title="MNIST",
        source="Yann LeCun, Corinna Cortes and Christopher J. C. Burges, http://yann.lecun.com/exdb/mnist/",
        licence="CC BY-SA 3.0",
        licence_url="https://creativecommons.org/licenses/by-sa/3.0/",
        note="Yann LeCun and Corinna Cortes hold the copyright; a derivative of NIST's data sets",
    ),
    "fashion-mnist": DataLicence(
        title="Fashion-MNIST",
        source="Zalando Research, https://github.com/zalandoresearch/fashion-mnist",
        licence="MIT",
        licence_url="https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE",
    ),
    "cifar10": DataLicence(
        title="CIFAR-10",
        source="Alex Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html",
        licence=NO_LICENCE_STATED,
        note="the source asks users to cite Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images",
    ),
    "head-ct": DataLicence(
        title="Head CT - hemorrhage",
        source="Felipe Kitamura on Kaggle, https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage",
        licence=NO_LICENCE_STATED,
        note="downloading it needs a Kaggle account; check the Kaggle page for its current terms",
    ),
    "brain-mri": DataLicence(
        title="Brain MRI Images for Brain Tumor Detection",
        source="Navoneel Chakrabarty on Kaggle, "
        "https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection",
        licence=NO_LICENCE_STATED,
        note="downloading it needs a Kaggle account; check the Kaggle page for its current terms",
    ),
    "magnetic-tile": DataLicence(
        title="Magnetic Tile Defects",
        source="Y. Huang, C. Qiu and K. Yuan, https://github.com/abin24/Magnetic-tile-defect-datasets.",
        licence=NO_LICENCE_STATED,
        note="cite Huang, Qiu and Yuan, The Visual Computer 36, 85-96 (2020), doi:10.1007/s00371-018-1588-5",
    ),
    "mvtec": DataLicence(
        title="MVTec AD",
        source="MVTec Software GmbH, https://www.mvtec.com/company/research/datasets/mvtec-ad",
        licence="CC BY-NC-SA 4.0",
        licence_url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
        note="non-commercial use only; models and results made from it inherit these terms",
    ),
    "coil100": DataLicence(
        title="COIL-100",
        source="Columbia University (CAVE), https://www.cs.columbia.edu/CAVE/software/softlib/coil-100.php",
        licence=NO_LICENCE_STATED,
        note="cite Nene, Nayar and Murase (1996), Columbia Object Image Library (COIL-100), CUCS-006-96",
    ),
}


def data_licence(name: str) -> str:
    """One line naming data set ``name``'s licence and source, as stored models
    record it, e.g. "MNIST: CC BY-SA 3.0 (https://...); source: ...". Lecture 1."""
    key = name.lower().replace("_", "-")
    if key not in DATA_LICENCES:
        raise ValueError(f"no licence recorded for the data set {name!r}; known: {', '.join(DATA_LICENCES)}")
    entry = DATA_LICENCES[key]
    licence = f"{entry.licence} ({entry.licence_url})" if entry.licence_url else entry.licence
    return f"{entry.title}: {licence}; source: {entry.source}"
