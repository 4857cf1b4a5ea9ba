"""The splits a table is evaluated on: one per normal class, COIL-100 row,
medical set, MVTec category or the magnetic tiles, and the same splits with
fewer training images. Lecture 1 (later tables: Lectures 4-7)."""

from __future__ import annotations

__lecture__ = 1

import math
from dataclasses import replace

import torch

from ..data import OneClassSplit, coil100_split, load_coil100, load_dataset, protocol2_split
from ..data.magnetic_tile import magnetic_tile_split
from ..data.medical import MEDICAL_SETS, available_medical, load_medical, medical_split
from ..data.mvtec import mvtec_split
from .tables import COIL100_SETTINGS, get_table


def table_splits(
    table: str, classes: list[int] | None, *, seed: int = 0, root=None, device="cpu", size: int | None = None
) -> dict[str, OneClassSplit]:
    """The one-class splits of a table, by case: one per normal class under
    protocol 2 (``classes``), the talk's three COIL-100 rows under protocol 1,
    or one per medical set present under the data root (a line says which are
    missing), one per MVTec category (``classes``: their names), or the one
    magnetic-tile split. Lecture 1 (COIL-100: Lecture 4; medical: Lecture 5;
    MVTec and magnetic tiles: Lecture 6). ``size``: the side of the images
    of a table that resizes them, instead of the table's own (the medical
    table: the profile's ``images`` setting)."""
    spec = get_table(table)
    size = size or spec.image_shape[-1]
    if spec.protocol == 4:
        return {"magnetic-tile": magnetic_tile_split(root, size=size, seed=seed, progress=False)}
    if spec.protocol == 3:
        return {c: mvtec_split(c, root, size=size, seed=seed) for c in classes}
    if spec.protocol == 0:
        present = [name for name, here in available_medical(root).items() if here]
        for name in sorted(set(MEDICAL_SETS) - set(present)):
            print(f"medical: {name} is not under the data root; get it from {MEDICAL_SETS[name].source}")
        if not present:
            load_medical(next(iter(MEDICAL_SETS)), root)  # raises the error that says where to get it
        splits = {}
        for name in present:
            images, labels = load_medical(name, root, size=size)
            splits[name] = medical_split(images.to(device), labels.to(device), seed=seed)
        return splits
    if spec.protocol == 2:
        train = load_dataset(spec.dataset, True, root=root, device=device)
        test = load_dataset(spec.dataset, False, root=root, device=device)
        return {str(c): protocol2_split(train, test, c) for c in classes}
    images, labels = load_coil100(root, size=spec.image_shape[-1], device=device)
    return {
        f"{n}-{fraction:.2f}": coil100_split(images, labels, n_normal_classes=n, anomaly_fraction=fraction, seed=seed)
        for n, fraction in COIL100_SETTINGS
    }


def fewer_training_images(
    splits: dict[str, OneClassSplit], settings: dict, methods: list[str], n_train: int, *, seed: int = 0
) -> tuple[dict[str, OneClassSplit], dict]:
    """Each split with a seeded random ``n_train`` of its normal training
    images, and the settings that train on them fairly: as many epochs as give
    the same number of gradient updates (batches) as the whole training set
    would, so that a smaller set is not also a shorter training; a validation
    set held out of the training images (Puzzle-AE's ``val_size``) shrinks in
    proportion. Lecture 7 (data efficiency)."""
    sizes = {len(split.x_train) for split in splits.values()}
    if len(sizes) != 1:
        raise ValueError(
            f"n_train needs cases with equally many training images, got {sorted(sizes)}: "
            "run one normal class at a time (e.g. classes [8])"
        )
    n_full = sizes.pop()
    if not 1 <= n_train <= n_full:
        raise ValueError(f"n_train={n_train}: the training set has {n_full} images; choose 1 <= n_train <= {n_full}")
    settings = {**settings}
    for m in methods:
        values = settings[m] = dict(settings[m])
        if values.get("val_size"):
            values["val_size"] = max(1, round(values["val_size"] * n_train / n_full))
        if "epochs" in values:
            batch = values.get("batch_size", n_full)
            updates = values["epochs"] * math.ceil(n_full / batch)
            values["epochs"] = math.ceil(updates / math.ceil(n_train / batch))
    smaller = {}
    for case, split in splits.items():
        order = torch.randperm(n_full, generator=torch.Generator().manual_seed(seed))[:n_train]
        smaller[case] = replace(split, x_train=split.x_train[order.to(split.x_train.device)])
    return smaller, settings
