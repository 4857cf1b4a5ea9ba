"""The course's detectors by name: one registry that the command line,
``reproduce``, ``batched``, the benchmarks and the notebooks read.

Each :class:`Method` says which class implements it, which row of the talk's
tables holds the same method, whether its one-class models can be trained side
by side as one stacked model (:mod:`anomaly_edu.experiments.batched`), and which images it
accepts. A later lecture adds its method with one more line in ``METHODS``.
Introduced in Lecture 1 (with rows from Lectures 4, 5 and 6).
"""

from __future__ import annotations

__lecture__ = 1

from dataclasses import dataclass

from ..anomaly_maps import MapAEDetector, SSIMAEDetector
from ..arae import ARAEDetector, UnionARAEDetector
from ..detectors import (
    AEDetector,
    DAEDetector,
    DeepSVDDDetector,
    Detector,
    MeanImageDetector,
    OCSVMDetector,
    PCADetector,
)
from ..geometric import GTDetector
from ..models import DeepSVDDNet
from ..puzzle_ae import PuzzleAEDetector


@dataclass(frozen=True)
class Method:
    """One detector of the course. Lecture 1."""

    name: str  # our name: the command line's and the profiles' key
    detector: type[Detector]  # the class that implements it
    talk_row: str | None  # the row of the talk's tables with the same method (None: no such row)
    stackable: bool  # can batched.fit_stacked train its models side by side?
    image_shape: tuple[int, int, int] | None  # the (C, H, W) it takes; None: any size and channels
    lecture: int  # the lecture that teaches it

    def accepts(self, image_shape: tuple) -> bool:
        """Whether the method can take images of shape (C, H, W)."""
        return self.image_shape is None or tuple(image_shape) == self.image_shape


METHODS: dict[str, Method] = {
    method.name: method
    for method in [
        Method("ae", AEDetector, talk_row=None, stackable=True, image_shape=None, lecture=1),
        Method("dae", DAEDetector, talk_row="DAE", stackable=True, image_shape=None, lecture=1),
        Method("ocsvm", OCSVMDetector, talk_row="OCSVM", stackable=False, image_shape=None, lecture=1),
        Method(
            "dsvdd", DeepSVDDDetector, talk_row="DSVDD", stackable=False, image_shape=DeepSVDDNet.image_shape, lecture=1
        ),
        # the trivial baselines every table shows: is the deep model better than the average picture?
        Method("mean-image", MeanImageDetector, talk_row=None, stackable=False, image_shape=None, lecture=1),
        Method("pca", PCADetector, talk_row=None, stackable=False, image_shape=None, lecture=1),
        Method("arae", ARAEDetector, talk_row="ARAE", stackable=True, image_shape=None, lecture=4),
        # the union variant's L-2 and spatial attacks work on one model at a time: not stackable
        Method("arae-union", UnionARAEDetector, talk_row=None, stackable=False, image_shape=None, lecture=4),
        Method("puzzle-ae", PuzzleAEDetector, talk_row="Puzzle-AE", stackable=False, image_shape=None, lecture=5),
        # the MVTec table's convolutional autoencoders and the generality table's GT (square images)
        Method("ae-l2", MapAEDetector, talk_row="AE_L2", stackable=False, image_shape=None, lecture=6),
        Method("ae-ssim", SSIMAEDetector, talk_row="AE_SSIM", stackable=False, image_shape=None, lecture=6),
        Method("gt", GTDetector, talk_row="GT", stackable=False, image_shape=None, lecture=6),
    ]
}


def get_method(name: str) -> Method:
    """The registry's entry for ``name``, or a clear error listing the known ones. Lecture 1."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def check_methods(names: list[str], image_shape: tuple | None = None, where: str = "") -> None:
    """Raise one clear error if a name is unknown or, given the ``image_shape``
    of a data set (``where`` names it), if a method cannot take its images.
    Call it before anything trains. Lecture 1."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known methods: {', '.join(METHODS)}")
    if image_shape is None:
        return
    refused = [name for name in names if not METHODS[name].accepts(image_shape)]
    if refused:
        details = "; ".join(f"{name} takes only {METHODS[name].image_shape} images" for name in refused)
        raise ValueError(
            f"{', '.join(refused)} cannot run on {where or 'these images'}, whose images are "
            f"{tuple(image_shape)}: {details}. Drop it from the methods."
        )


def make_detector(name: str, settings: dict, *, seed: int = 0, device=None, progress: bool = True) -> Detector:
    """The detector called ``name`` with its settings from ``settings`` (a
    profile from :func:`anomaly_edu.profiles.get_profile`, whose entry ``name``
    is used). Lecture 1."""
    method = get_method(name)
    if name not in settings:
        raise ValueError(
            f"the settings have no entry for {name!r} (they have {', '.join(sorted(settings))}); "
            f"add one to anomaly_edu/profiles.py"
        )
    run_options = {"seed": seed, "device": device, "progress": progress}
    takes = method.detector.param_names()  # the OCSVM has no device and no progress bar
    return method.detector(**{k: v for k, v in run_options.items() if k in takes}, **settings[name])
