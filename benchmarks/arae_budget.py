"""How ARAE's AUROC grows with its training budget, beside the plain AE's, on one MNIST class.

    python benchmarks/arae_budget.py --normal-class 5 --epochs 100 --every 10
    python benchmarks/arae_budget.py --epochs 60 --variants arae,arae:attack=epoch,arae:gamma=0
    python benchmarks/arae_budget.py --epochs 60 --variants ae,arae --out results/arae_budget.json

Trains each variant (full-profile settings: eps 0.2, a 40-step attack, batch
256) on one normal class under protocol 2 and prints, every ``--every`` epochs,
the test AUROC, how far apart the latent codes of two different training images
lie (a collapse of the codes shows as a small spread) and the time spent so far.
It first prints the AUROC of a model that draws the average training image for
every input (the score: a test image's distance to that average), the level at
which a collapsed model sits.

A variant is a method with optional changes, ``METHOD:KEY=VALUE:...``:
``arae:gamma=0`` or ``arae:eps=0.1`` change a profile setting, ``arae:seed=1``
the seed, and ``arae:attack=epoch`` attacks the whole training set once per
epoch with the model of the epoch's start, as the ARAE code does, instead of
attacking each mini-batch as it comes. It is how the course checks whether a
shortened CPU budget, or one of the settings, explains a gap to the talk's
numbers; it reports test AUROCs and selects nothing, and it asserts nothing.

With ``--out FILE`` it also writes, per variant (named as given), the
checkpoints ``{"epoch", "auroc", "code_spread", "seconds"}`` and the
average-image AUROC to a JSON file, with the provenance (commit, device,
versions, wall time) and the settings of every variant; the appendix page
"ARAE's slow start" shows such files.
``--max-train N`` trains on the first N training images only (a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.arae import ARAEDetector, latent_attack, robust_reconstruction_loss  # noqa: E402
from anomaly_edu.detectors import AEDetector  # noqa: E402
from anomaly_edu.experiments import methods, results, tables  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device, seeded, train  # noqa: E402

# the methods this benchmark can train: the autoencoders of the registry
AUTOENCODERS = [name for name, method in methods.METHODS.items() if issubclass(method.detector, AEDetector)]


def parse_variant(text: str, settings: dict, seed: int) -> tuple[str, dict, int, str]:
    """ "arae:gamma=0:seed=1" -> ("arae", its settings with gamma 0, seed 1, attack "batch")."""
    method, *changes = text.split(":")
    if method not in AUTOENCODERS:
        raise SystemExit(f"unknown method {method!r} in variant {text!r}; known: {', '.join(AUTOENCODERS)}")
    attack, profile_changes = "batch", []
    for change in changes:
        key, _, value = change.partition("=")
        if key == "seed":
            seed = int(value)
        elif key == "attack" and method == "arae" and value in ("batch", "epoch"):
            attack = value
        else:  # a setting of the profile, checked as reproduce --set checks it
            profile_changes.append(f"{method}.{change}")
    try:
        values = tables.apply_changes(settings, tables.parse_changes(profile_changes))[method]
    except ValueError as err:
        raise SystemExit(
            f"cannot read the variant {text!r}: {err} (seed=N and, for arae, attack=batch|epoch are also allowed)"
        ) from None
    return method, values, seed, attack


def code_spread(model: torch.nn.Module, x: torch.Tensor, seed: int) -> float:
    """Mean distance between the latent codes of two different images of ``x``."""
    with torch.no_grad():
        codes = torch.cat([model.encode(batch) for batch in x.split(1024)])
    pairs = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed)).to(codes.device)
    return (codes - codes[pairs]).norm(dim=1).mean().item()


def epoch_of_stored_attacks(
    detector: ARAEDetector, x: torch.Tensor, optimizer: torch.optim.Optimizer, seed: int
) -> list[float]:
    """One epoch as the ARAE code runs it: attack every training image with the
    current model, then train on those fixed adversarial images."""
    attacked = torch.cat(
        [
            latent_attack(detector.model_, batch, eps=detector.eps, steps=detector.steps)
            for batch in x.split(detector.batch_size)
        ]
    )

    def loss(model, x_batch, attacked_batch):  # the ARAE loss, its attack replaced by a look-up
        return robust_reconstruction_loss(lambda m, xb: attacked_batch, detector.gamma)(model, x_batch)

    return train(
        detector.model_,
        x,
        attacked,
        batch_loss=loss,
        epochs=1,
        batch_size=detector.batch_size,
        seed=seed,
        optimizer=optimizer,
        progress=False,
    )


def average_image_auroc(split: data.OneClassSplit) -> float:
    """The test AUROC (in %) of scoring each test image by its mean squared
    distance to the average training image."""
    distance = (split.x_test - split.x_train.mean(dim=0)).pow(2).flatten(1).mean(dim=1)
    return 100 * auroc(split.y_test, distance.cpu().numpy())


def fit_and_report(
    detector: AEDetector, split: data.OneClassSplit, *, epochs: int, every: int, attack: str
) -> list[dict]:
    """Train ``detector`` as its ``fit`` does (a fresh model, the same seeded
    random numbers), but stop every ``every`` epochs to print the test AUROC,
    the spread of the latent codes and the time spent so far; return these
    checkpoints. ``attack="epoch"`` (ARAE only) attacks the training set once
    per epoch instead of once per batch."""
    x = split.x_train
    detector.device_ = pick_device(detector.device)
    with seeded(detector.seed):
        detector.model_ = detector.new_model(tuple(x.shape[1:])).to(detector.device_)
        optimizer = torch.optim.Adam(detector.model_.parameters(), lr=detector.lr)  # kept from chunk to chunk
        detector.history_ = []  # the mean loss of each epoch, as fit() records it
        start, done, checkpoints = time.perf_counter(), 0, []
        while done < epochs:
            chunk = min(every, epochs - done)
            if attack == "epoch":
                for epoch in range(done, done + chunk):
                    detector.history_ += epoch_of_stored_attacks(detector, x, optimizer, detector.seed + epoch)
            else:
                detector.history_ += train(
                    detector.model_,
                    x,
                    batch_loss=detector.batch_loss(),
                    epochs=chunk,
                    batch_size=detector.batch_size,
                    seed=detector.seed + done,
                    optimizer=optimizer,
                    progress=False,
                )
            done += chunk
            auc = 100 * auroc(split.y_test, detector.anomaly_score(split.x_test))
            spread = code_spread(detector.model_, x, detector.seed)
            seconds = time.perf_counter() - start
            print(f"  epoch {done:5d}  AUROC {auc:5.1f}  code spread {spread:6.3f}  ({seconds:6.0f} s)", flush=True)
            checkpoints.append(
                {"epoch": done, "auroc": round(auc, 2), "code_spread": round(spread, 4), "seconds": round(seconds, 1)}
            )
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal-class", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument(
        "--variants",
        "--methods",
        default="ae,arae",
        help="comma-separated METHOD[:KEY=VALUE...], e.g. ae,arae,arae:attack=epoch",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=None, help="use the first N training images (default: all)")
    parser.add_argument("--out", default=None, help="write the checkpoints and their provenance to this JSON file")
    args = parser.parse_args()
    texts = args.variants.split(",")
    if len(set(texts)) < len(texts):
        parser.error(f"--variants names a variant twice: {args.variants}")
    if min(args.epochs, args.every, args.max_train or 1) < 1:
        parser.error("--epochs, --every and --max-train must be at least 1")
    results.check_out_option(parser, args.out)  # fail now, not after the training

    run_start = results.RunStart()
    device = pick_device(args.device)
    settings = profiles.get_profile("full")
    variants = [parse_variant(text, settings, args.seed) for text in texts]
    split = data.load_one_class("mnist", args.normal_class, protocol=2, device=device)
    split = dataclasses.replace(split, x_train=split.x_train[: args.max_train])
    print(f"normal class {args.normal_class}: {split.describe()}; {device}, {torch.get_num_threads()} thread(s)")
    average = average_image_auroc(split)
    print(f"the average training image for every input: AUROC {average:5.1f}")
    checkpoints, used = {}, {}
    for text, (method, values, seed, attack) in zip(texts, variants):
        detector = methods.make_detector(method, {method: values}, seed=seed, device=device, progress=False)
        print(f"\n{text}: {values}, seed {seed}" + (f", attack once per {attack}" if method == "arae" else ""))
        checkpoints[text] = fit_and_report(detector, split, epochs=args.epochs, every=args.every, attack=attack)
        # the profile's epochs are not used: this benchmark trains for --epochs
        used[text] = {"method": method, **values, "epochs": args.epochs, "seed": seed}
        if method == "arae":
            used[text]["attack"] = f"once per {attack}"
    if args.out:
        run = {
            "normal_class": args.normal_class,
            "protocol": 2,
            "epochs": args.epochs,
            "every": args.every,
            "seed": args.seed,
            "max_train": args.max_train,
            "n_train": len(split.x_train),
            "variants": used,
        }
        record = {
            "benchmark": "arae_budget",
            "command": shlex.join(["python", "benchmarks/arae_budget.py", *sys.argv[1:]]),
            "arguments": vars(args),
            "results": checkpoints,
            "average_image_auroc": round(average, 2),
        }
        results.write_with_provenance(record, args.out, start=run_start, settings=run, device=device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
