"""How fast the course's networks train and score on this machine, each technique beside the path it replaces.

    python benchmarks/speed.py                      # every network, 2 threads
    python benchmarks/speed.py --threads 1 --steps 20
    python benchmarks/speed.py --compile            # also torch.compile on the quick U-Net (slow to compile)
    python benchmarks/speed.py --out results/speed_cpu.json

Every figure is measured in this run, the reference path (the code before the
speed work: the course's earlier U-Net, PyTorch's default NCHW layout, scoring
under ``no_grad``) beside the technique, and printed as milliseconds and as the
ratio reference / technique (above 1: the technique is faster). A training
step is one optimizer step of the method's own batch loss on random images of
its shape (the time of a step does not depend on what the pixels show); an
epoch on digit 8 is that times the steps of an epoch over the 5,000 training
8s that Puzzle-AE keeps (5,851 for the others). Scoring is per 1,000 test
images (Puzzle-AE: each under its 23 puzzles). The Puzzle-AE fit-and-score
estimate is the quick profile's epochs of training plus the 10,000 test
images, for both paths.

What it does not measure: flush-to-zero for subnormal floats
(``anomaly_edu.training.flushed_denormals``, on in every training) matters only
once weight decay has driven weights into subnormals, after many epochs; its
effect is recorded in COURSE.md ("Speed"). The benchmark asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu.arae import arae_loss  # noqa: E402
from anomaly_edu.experiments import results  # noqa: E402
from anomaly_edu.geometric import TransformClassifier, transformed_batch  # noqa: E402
from anomaly_edu.models import MLPAutoencoder, MnistCNN  # noqa: E402
from anomaly_edu.profiles import settings  # noqa: E402
from anomaly_edu.puzzle_ae import permutation_errors, puzzle_loss  # noqa: E402
from anomaly_edu.puzzle_networks import UNet  # noqa: E402
from anomaly_edu.puzzles import apply_permutations, puzzle_permutations  # noqa: E402
from anomaly_edu.training import classification_loss, flushed_denormals, reconstruction_loss  # noqa: E402

PUZZLE = settings("quick", "puzzle-ae")
FULL_WIDTHS = tuple(settings("full", "puzzle-ae")["widths"])
PUZZLE_TRAIN, OTHERS_TRAIN, TEST = 5000, 5851, 10_000


def per_call_ms(call, repeats: int, warmup: int = 3) -> float:
    """The median time of ``call()`` over ``repeats`` calls after ``warmup``, in ms."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def step_ms(model, batch_loss, x, y=None, repeats=20, optimizer=None) -> float:
    """One optimizer step of ``batch_loss`` on the batch ``x``, in ms."""
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = batch_loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    with flushed_denormals():
        return per_call_ms(step, repeats)


def unet(build="course", channels_last=False, widths=tuple(PUZZLE["widths"])):
    torch.manual_seed(0)
    return UNet(widths=widths, channels_last=channels_last, build=build)


def images(n, shape=(1, 28, 28)):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))


def puzzle_training(repeats: int) -> list[dict]:
    """Puzzle-AE's training step (PAE, the quick settings) in each layout and batch size."""
    loss = puzzle_loss(grid=2, perms=puzzle_permutations(2), colour=False, eps=PUZZLE["eps"], shortcut="clean-target")
    rows, reference = [], None
    for name, build, last, batch in [
        ("quick U-Net, NCHW, batch 16 (reference)", "course", False, 16),
        ("quick U-Net, channels-last, batch 16", "course", True, 16),
        ("quick U-Net, channels-last, batch 64", "course", True, 64),
        ("the code's U-Net at quick widths, channels-last, batch 16", "published", True, 16),
        ("the code's U-Net at quick widths, channels-last, batch 64", "published", True, 64),
    ]:
        ms = step_ms(unet(build, last), loss, images(batch), repeats=repeats)
        epoch_s = ms * math.ceil(PUZZLE_TRAIN / batch) / 1000
        reference = reference or epoch_s
        rows.append(
            dict(what=f"Puzzle-AE training: {name}", ms_per_step=ms, s_per_epoch=epoch_s, ratio=reference / epoch_s)
        )
    reference = None
    for name, last in [
        ("published widths, NCHW, batch 64", False),
        ("published widths, channels-last, batch 64", True),
    ]:
        ms = step_ms(unet("published", last, FULL_WIDTHS), loss, images(64), repeats=max(3, repeats // 4))
        epoch_s = ms * math.ceil(PUZZLE_TRAIN / 64) / 1000
        reference = reference or epoch_s
        rows.append(
            dict(what=f"Puzzle-AE training: {name}", ms_per_step=ms, s_per_epoch=epoch_s, ratio=reference / epoch_s)
        )
    return rows


def puzzle_scoring(repeats: int) -> list[dict]:
    """Scoring 1,000 test images under every puzzle: the reference pass (no_grad,
    NCHW) against the package's (inference mode, channels-last)."""
    x, perms = images(1000), puzzle_permutations(2)

    @torch.no_grad()
    def reference_errors(model):  # the scoring before the speed work, in one chunk of 2,048 puzzles at a time
        out = []
        for batch in x.split(2048 // len(perms)):
            puzzled = apply_permutations(batch, perms, 2).flatten(0, 1)
            restored = model(puzzled).view(len(batch), len(perms), *batch.shape[1:])
            out.append((restored - batch.unsqueeze(1)).pow(2).flatten(2).mean(2))
        return torch.cat(out)

    old, new = unet("course", False).eval(), unet("course", True).eval()
    new.load_state_dict(old.state_dict())
    torch.testing.assert_close(
        permutation_errors(new, x[:50], perms, 2), reference_errors(old)[:50], rtol=1e-4, atol=1e-6
    )
    reference = per_call_ms(lambda: reference_errors(old), repeats, warmup=1)
    rows = [dict(what="Puzzle-AE scoring per 1,000 images (reference: no_grad, NCHW)", ms=reference, ratio=1.0)]
    ms = per_call_ms(lambda: permutation_errors(new, x, perms, 2), repeats, warmup=1)
    rows.append(
        dict(what="Puzzle-AE scoring per 1,000 images: inference mode, channels-last", ms=ms, ratio=reference / ms)
    )
    published = unet("published", True).eval()
    ms = per_call_ms(lambda: permutation_errors(published, x, perms, 2), repeats, warmup=1)
    rows.append(
        dict(what="Puzzle-AE scoring per 1,000 images: the code's U-Net, channels-last", ms=ms, ratio=reference / ms)
    )
    return rows


def fit_and_score(training: list[dict], scoring: list[dict]) -> list[dict]:
    """The quick profile's Puzzle-AE fit (its epochs) and the scoring of the 10,000 test images, both paths."""
    epochs = PUZZLE["epochs"]
    reference = epochs * training[0]["s_per_epoch"] + TEST / 1000 * scoring[0]["ms"] / 1000
    ours = epochs * training[1]["s_per_epoch"] + TEST / 1000 * scoring[1]["ms"] / 1000
    return [
        dict(what=f"Puzzle-AE quick fit ({epochs} epochs) + scoring 10,000 images: reference", s=reference, ratio=1.0),
        dict(what="Puzzle-AE quick fit + scoring: channels-last and inference mode", s=ours, ratio=reference / ours),
    ]


def other_networks(repeats: int) -> list[dict]:
    """ARAE, the AE, GT and the CNN classifier: the quick settings, each technique against the plain path."""
    rows = []
    arae = settings("quick", "arae")
    mlp = lambda: MLPAutoencoder(image_shape=(1, 28, 28), activation="relu")  # noqa: E731
    ae_batch, arae_batch = settings("quick", "ae")["batch_size"], arae["batch_size"]
    loss = arae_loss(eps=arae["eps"], steps=arae["steps"], gamma=arae["gamma"])
    for method, batch_loss, batch in [("ARAE", loss, arae_batch), ("AE", reconstruction_loss, ae_batch)]:
        torch.manual_seed(0)
        model = mlp()
        reference = step_ms(model, batch_loss, images(batch), repeats=repeats)
        torch.manual_seed(0)
        model = mlp()
        fused = step_ms(
            model,
            batch_loss,
            images(batch),
            repeats=repeats,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-3, fused=True),
        )
        steps = math.ceil(OTHERS_TRAIN / batch)
        rows.append(
            dict(
                what=f"{method} training (reference)",
                ms_per_step=reference,
                s_per_epoch=reference * steps / 1000,
                ratio=1.0,
            )
        )
        rows.append(
            dict(
                what=f"{method} training: fused Adam",
                ms_per_step=fused,
                s_per_epoch=fused * steps / 1000,
                ratio=reference / fused,
            )
        )
    gt, cnn = settings("quick", "gt"), settings("quick", "cnn")
    x_gt, y_gt = transformed_batch(images(gt["batch_size"] // 8))
    for method, make, x, y in [
        ("GT", lambda: TransformClassifier(widths=tuple(gt["widths"])), x_gt, y_gt),
        ("CNN classifier", MnistCNN, images(cnn["batch_size"]), torch.arange(cnn["batch_size"]) % 10),
    ]:
        times = []
        for last in (False, True):
            torch.manual_seed(0)
            model = make()
            if last:
                model = model.to(memory_format=torch.channels_last)
            times.append(
                step_ms(
                    model,
                    classification_loss,
                    x.contiguous(memory_format=torch.channels_last) if last else x,
                    y,
                    repeats=repeats,
                )
            )
        rows.append(dict(what=f"{method} training (reference)", ms_per_step=times[0], ratio=1.0))
        rows.append(dict(what=f"{method} training: channels-last", ms_per_step=times[1], ratio=times[0] / times[1]))
    return rows


def compiled(repeats: int) -> list[dict]:
    """torch.compile on the quick U-Net: the compile time and the step time after it."""
    loss = puzzle_loss(grid=2, perms=puzzle_permutations(2), colour=False, eps=PUZZLE["eps"], shortcut="clean-target")
    model = unet("course", True)
    reference = step_ms(model, loss, images(16), repeats=repeats)
    fast = torch.compile(unet("course", True))
    start = time.perf_counter()
    step_ms(fast, loss, images(16), repeats=1)
    compile_s = time.perf_counter() - start
    ms = step_ms(fast, loss, images(16), repeats=repeats)
    return [
        dict(
            what="Puzzle-AE training, channels-last, torch.compile (after compiling)",
            ms_per_step=ms,
            compile_s=compile_s,
            ratio=reference / ms,
        )
    ]


def show(rows: list[dict]) -> None:
    for row in rows:
        figures = "  ".join(f"{key} {value:,.2f}" for key, value in row.items() if key not in ("what", "ratio"))
        print(f"{row['what']:<78} {figures:<44} x{row['ratio']:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (their median is kept)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile on the quick U-Net")
    parser.add_argument("--out", default=None, help="write the figures and their provenance to this JSON file")
    args = parser.parse_args(argv)
    results.check_out_option(parser, args.out)
    torch.set_num_threads(args.threads)
    run_start = results.RunStart()
    print(f"cpu, {torch.get_num_threads()} thread(s); ratio = reference time / this time\n")
    figures = {
        "puzzle_training": puzzle_training(args.steps),
        "puzzle_scoring": puzzle_scoring(max(3, args.steps // 5)),
    }
    figures["puzzle_fit_and_score"] = fit_and_score(figures["puzzle_training"], figures["puzzle_scoring"])
    figures["other_networks"] = other_networks(args.steps)
    if args.compile:
        figures["compiled"] = compiled(args.steps)
    for rows in figures.values():
        show(rows)
        print()
    if args.out:
        results.write_with_provenance(
            {"figures": figures}, args.out, start=run_start, settings=vars(args), device=torch.device("cpu")
        )
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
