"""How much does scoring under every puzzle cost next to plain forward passes? (Lecture 5)

Puzzle-AE scores an image by reconstructing it under each of the 23
non-identity 2x2 puzzles. This script times
``anomaly_edu.puzzle_ae.permutation_errors`` on the MNIST test images (all
10,000 by default) with the quick profile's U-Net, against the reference: 23
plain forward passes of the same network over the same images, in batches of
the same size. Each is timed ``--repeats`` times, alternating, after a warm-up;
the script prints the medians and their ratio (the goal: at most 2). The
network is untrained (the cost does not depend on the weights). Asserts nothing.

    ANOMALY_EDU_DATA=/path/to/data python benchmarks/puzzle_scoring.py [--images 10000] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from anomaly_edu.data import load_dataset  # noqa: E402
from anomaly_edu.profiles import settings  # noqa: E402
from anomaly_edu.puzzle_ae import UNet, permutation_errors  # noqa: E402
from anomaly_edu.puzzles import puzzle_permutations  # noqa: E402
from anomaly_edu.training import pick_device, predict_in_batches, seeded  # noqa: E402

IMAGES_PER_PASS = 2048  # permutation_errors' default: images (puzzles included) per forward pass


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="MNIST test images to score")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    x, _ = load_dataset("mnist", train=False, device=device)
    x = x[: args.images]
    perms = puzzle_permutations(2).to(device)
    with seeded(0):
        unet = UNet(widths=tuple(settings("quick", "puzzle-ae")["widths"])).to(device).eval()

    def puzzles():
        permutation_errors(unet, x, perms, grid=2, images_per_pass=IMAGES_PER_PASS)

    def plain():  # the reference: the same number of images through the same network
        for _ in range(len(perms)):
            predict_in_batches(unet, x, IMAGES_PER_PASS)

    permutation_errors(unet, x[:256], perms, grid=2)  # warm-up
    ours, reference = [], []
    for _ in range(args.repeats):
        ours.append(timed(puzzles, device))
        reference.append(timed(plain, device))
    ours_s, reference_s = statistics.median(ours), statistics.median(reference)
    print(f"device: {device}, {torch.get_num_threads()} CPU threads; U-Net widths {unet.widths}")
    print(f"{len(x)} images x {len(perms)} puzzles = {len(x) * len(perms)} reconstructions")
    for name, median, runs in (
        ("scoring under every puzzle (permutation_errors)", ours_s, ours),
        (f"{len(perms)} plain forward passes (reference)", reference_s, reference),
    ):
        print(f"{name:<50} {median:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in runs)})")
    print(f"ratio scoring / plain passes: {ours_s / reference_s:.2f}  (goal: at most 2)")


if __name__ == "__main__":
    main()
