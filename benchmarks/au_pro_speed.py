"""How long does AU-PRO take on a whole industrial test set? (Lecture 6)

Times ``anomaly_edu.metrics.au_pro`` (exact) and ``pixel_auroc`` on the
magnetic-tile test set of the course's split (hundreds of tiles, each at its
own size, tens of millions of pixels), with an anomaly map that is the tile's
blurred mask plus noise (the time does not depend on how good the map is).
The reference, timed in the same run on the same pixels: scikit-learn's
``roc_auc_score`` (one sort of all pixels). Each is timed ``--repeats``
times, alternating; the script prints the medians, their ratio and the
goal (AU-PRO at most 10 s on 2 CPU cores). Asserts nothing.

    ANOMALY_EDU_DATA=/path/to/data python benchmarks/au_pro_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from anomaly_edu.data.magnetic_tile import magnetic_tile_split  # noqa: E402
from anomaly_edu.metrics import au_pro, pixel_auroc  # noqa: E402

GOAL_S = 10.0


def timed(fn) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    split = magnetic_tile_split(progress=False)
    rng = np.random.default_rng(0)
    masks = split.masks_test
    maps = [
        (ndimage.gaussian_filter(mask.astype(np.float32), 4) + 0.3 * rng.random(mask.shape)).astype(np.float32)
        for mask in masks
    ]
    pixels = sum(mask.size for mask in masks)
    print(f"magnetic-tile test set: {len(masks)} tiles, {pixels:,} pixels, {sum(m.sum() for m in masks):,} defect")

    labels = np.concatenate([m.ravel() for m in masks])
    scores = np.concatenate([m.ravel() for m in maps])
    times = {"au_pro": [], "pixel_auroc": [], "sklearn roc_auc_score": []}
    for _ in range(args.repeats):
        seconds, pro = timed(lambda: au_pro(masks, maps))
        times["au_pro"].append(seconds)
        seconds, ours = timed(lambda: pixel_auroc(masks, maps))
        times["pixel_auroc"].append(seconds)
        seconds, reference = timed(lambda: roc_auc_score(labels, scores))
        times["sklearn roc_auc_score"].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in median.items():
        print(f"{name:<22} median {seconds:6.2f} s over {args.repeats} runs")
    print(f"AU-PRO {pro:.4f}; pixel AUROC {ours:.6f} (scikit-learn: {reference:.6f})")
    print(f"AU-PRO / roc_auc_score time: {median['au_pro'] / median['sklearn roc_auc_score']:.2f}")
    verdict = "within" if median["au_pro"] <= GOAL_S else "OVER"
    print(f"goal: AU-PRO of the whole test set in at most {GOAL_S:.0f} s on 2 CPU cores: {verdict}")


if __name__ == "__main__":
    main()
