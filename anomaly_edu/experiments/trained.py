"""Trained models that ship with the course, so that a lecture can show a
method working without training it for an hour. Introduced in Lecture 1.

A lecture trains its quick model live (to show the process), then loads the
course's stored model of the same method (to show the method at a budget where
it works), and says which is which.

- :func:`save_detector` writes a fitted detector's networks and tensors to
  ``NAME.safetensors`` (safetensors: plain tensors, no pickled code to run) and
  records in ``manifest.json`` its method, settings, image shape, SHA-256,
  size, training losses, measured figures and provenance;
- :func:`load_detector` checks the file against the manifest (size, then
  SHA-256) and refuses a truncated or changed file with
  :class:`~anomaly_edu.data.CorruptDataError`, then rebuilds the fitted
  detector, ready to ``anomaly_score``;
- :func:`save_network` and :func:`load_network` do the same for a plain
  network (the classifiers of Lectures 2 and 3);
- :func:`verify` checks every file of a folder against its manifest.

``precision="float16"`` stores the weights at half precision, half the bytes
(the wheel carries every stored model); they are loaded back as float32, and
the figures in the manifest are measured on the model as loaded.

The course's models live in ``models/`` of the repository; like the stored
results, the package reaches them through a link (``anomaly_edu/stored_models``)
and a wheel carries a copy.
"""

from __future__ import annotations

__lecture__ = 1

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..data import CorruptDataError
from ..data.files import atomic_file, write_json_atomically

STORED_MODELS = Path(__file__).parents[1] / "stored_models"
MANIFEST = "manifest.json"
NETWORK = "network."  # the prefix of the network's weights in a file; fitted tensors are named "fitted.NAME"


def sha256_of(data: bytes) -> str:
    """The SHA-256 of ``data``, in hex. Lecture 1."""
    return hashlib.sha256(data).hexdigest()


def read_manifest(folder: str | os.PathLike = STORED_MODELS) -> dict:
    """The manifest of ``folder``: {name: entry}; empty when there is none yet. Lecture 1."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text())["models"] if path.exists() else {}


PRECISIONS = {"float32": torch.float32, "float16": torch.float16}


def _write(name: str, tensors: dict[str, torch.Tensor], entry: dict, folder, precision: str = "float32") -> dict:
    """Write ``NAME.safetensors`` (its floating-point tensors at ``precision``) and
    its manifest entry, each atomically."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"a model's name is a plain file name such as 'ae-digit8', got {name!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        stored[key] = value.to(PRECISIONS[precision]) if value.is_floating_point() else value
    data = save_tensors(stored)
    with atomic_file(folder / f"{name}.safetensors", "wb") as f:
        f.write(data)
    entry = {
        "file": f"{name}.safetensors",
        "sha256": sha256_of(data),
        "bytes": len(data),
        "precision": precision,
        **entry,
    }
    write_json_atomically({"models": {**read_manifest(folder), name: entry}}, folder / MANIFEST)
    return entry


def _read(name: str, folder) -> tuple[dict, dict[str, torch.Tensor]]:
    """A model's manifest entry and tensors, after checking its file against the entry."""
    folder = Path(folder)
    models = read_manifest(folder)
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise KeyError(f"no stored model {name!r} in {folder}; the stored models are: {known}")
    entry = models[name]
    path = folder / entry["file"]
    if not path.is_file():
        raise CorruptDataError(f"{path} is missing; restore it (git checkout -- {path.name}) or reinstall the package")
    data = path.read_bytes()
    if len(data) != entry["bytes"]:
        raise CorruptDataError(
            f"{path} has {len(data)} bytes but its manifest says {entry['bytes']}: the file is truncated or "
            f"replaced; restore it (git checkout -- {path.name}) or reinstall the package"
        )
    if sha256_of(data) != entry["sha256"]:
        raise CorruptDataError(
            f"{path} does not match its manifest (SHA-256 {sha256_of(data)[:12]}..., expected "
            f"{entry['sha256'][:12]}...): the file was changed; restore it or reinstall the package"
        )
    try:
        tensors = load_tensors(data)
    except SafetensorError as err:  # only a manifest written for a broken file gets here
        raise CorruptDataError(f"{path} is not a readable safetensors file: {err}") from err
    # weights stored at half precision are used as float32, like the networks they go into
    return entry, {key: value.float() if value.dtype == torch.float16 else value for key, value in tensors.items()}


def verify(folder: str | os.PathLike = STORED_MODELS) -> dict[str, str]:
    """Check every model of ``folder`` against its manifest; {name: SHA-256}. Lecture 1."""
    return {name: _read(name, folder)[0]["sha256"] for name in read_manifest(folder)}


# ---------------------------------------------------------------- plain networks (Lectures 2 and 3)


def save_network(network: torch.nn.Module, name: str, folder, *, precision: str = "float32", **about) -> dict:
    """Store a plain network's weights with ``about`` (its settings, figures and
    provenance, as JSON-able values) in the manifest. Lecture 1."""
    state = {NETWORK + key: value for key, value in network.state_dict().items()}
    return _write(name, state, {"kind": "network", "class": type(network).__name__, **about}, folder, precision)


def load_network(name: str, network: torch.nn.Module, folder=STORED_MODELS) -> torch.nn.Module:
    """Load a stored network's weights into ``network`` (built by the caller with
    the settings the manifest gives), checked first; returns it in eval mode. Lecture 1."""
    entry, tensors = _read(name, folder)
    if entry.get("class") != type(network).__name__:
        raise ValueError(f"{name!r} holds a {entry.get('class')}, not a {type(network).__name__}")
    network.load_state_dict({key[len(NETWORK) :]: value for key, value in tensors.items()})
    return network.eval()


# ---------------------------------------------------------------- fitted detectors


def _network_attribute(detector) -> str:
    """The fitted attribute that holds the detector's network (``model_`` or ``net_``)."""
    names = [k for k, v in vars(detector).items() if k.endswith("_") and isinstance(v, torch.nn.Module)]
    if len(names) != 1 or not hasattr(detector, "new_model"):
        raise ValueError(
            f"only a fitted detector with one network can be stored; {type(detector).__name__} has "
            f"{len(names)} (the OCSVM, PCA and the mean image refit in seconds: fit them instead)"
        )
    return names[0]


def save_detector(
    detector, name: str, folder, *, method: str, image_shape: tuple, precision: str = "float32", **about
) -> dict:
    """Store a fitted detector of the registry's ``method`` (the name
    ``make_detector`` takes): its network's weights, its fitted tensors (e.g.
    Puzzle-AE's normalisers), its settings and training losses, and ``about``
    (figures, provenance, a description) as JSON-able values. Lecture 1."""
    attribute = _network_attribute(detector)
    tensors = {NETWORK + key: value for key, value in getattr(detector, attribute).state_dict().items()}
    for key, value in vars(detector).items():
        if key.endswith("_") and isinstance(value, torch.Tensor):
            tensors[f"fitted.{key}"] = value
    entry = {
        "kind": "detector",
        "method": method,
        "settings": {k: v for k, v in detector.get_params().items() if k not in ("device", "progress")},
        "image_shape": list(image_shape),
        "network_attribute": attribute,
        "history": [round(loss, 6) for loss in getattr(detector, "history_", [])],
        **about,
    }
    try:
        entry = json.loads(json.dumps(entry))  # tuples become lists, as the file will give them back
    except TypeError as err:
        raise ValueError(
            f"{name!r}: a detector whose settings are not plain values (e.g. a network given as model=...) "
            f"cannot be rebuilt from the manifest ({err})"
        ) from None
    return _write(name, tensors, entry, folder, precision)


def load_detector(name: str, folder=STORED_MODELS, device=None):
    """The stored detector ``name``, fitted and ready to score, after its file
    has been checked against the manifest. Lecture 1."""
    from ..training import pick_device
    from .methods import get_method  # methods imports every detector; imported here to keep this module light

    entry, tensors = _read(name, folder)
    if entry.get("kind") != "detector":
        raise ValueError(f"{name!r} is a plain network: load it with load_network")
    detector_class = get_method(entry["method"]).detector
    options = {"device": device, "progress": False}
    detector = detector_class(
        **entry["settings"], **{k: v for k, v in options.items() if k in detector_class.param_names()}
    )
    detector.device_ = pick_device(device)
    network = detector.new_model(tuple(entry["image_shape"]))
    network.load_state_dict({key[len(NETWORK) :]: value for key, value in tensors.items() if key.startswith(NETWORK)})
    setattr(detector, entry["network_attribute"], network.to(detector.device_).eval())
    for key, value in tensors.items():
        if key.startswith("fitted."):
            setattr(detector, key[len("fitted.") :], value.to(detector.device_))
    detector.history_ = entry["history"]
    return detector
