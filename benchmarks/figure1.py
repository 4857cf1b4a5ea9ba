"""The talk's Figure 1 measured: does ARAE draw a normal digit where the DAE copies the anomaly?

    python benchmarks/figure1.py --out results/figure1_digit8.json

The stored digit-8 autoencoders (``models/``: AE, DAE, ARAE) reconstruct the
first ``--anomalies`` test images that are not 8s. For each reconstruction it
measures (``anomaly_edu.arae.reconstruction_nearness``) the distance to the
input and to the nearest training 8, and prints per model the mean of both and
the share of anomalies whose reconstruction is nearer to a training 8 than to
the input. The talk's figure shows one digit 1: the DAE copies it, ARAE draws
an 8. One stored model per method is one seed: the reproduction report reads
the file, and cannot rank the methods from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu import data  # noqa: E402
from anomaly_edu.arae import reconstruction_nearness  # noqa: E402
from anomaly_edu.experiments import results, trained  # noqa: E402

MODELS = {"ae": "ae-digit8", "dae": "dae-digit8", "arae": "arae-digit8"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalies", type=int, default=1000, help="how many non-8 test images (the first ones)")
    parser.add_argument("--out", default=None, help="write the figures and their provenance to this JSON file")
    args = parser.parse_args(argv)
    results.check_out_option(parser, args.out)
    run_start = results.RunStart()
    x_train, y_train = data.load_dataset("mnist", True)
    x_test, y_test = data.load_dataset("mnist", False)
    normal, anomalies = x_train[y_train == 8], x_test[y_test != 8][: args.anomalies]
    figures = {}
    print(f"{len(anomalies)} anomalous test images, {len(normal)} training 8s\n")
    print(f"{'model':<6} {'to its input':>13} {'to the nearest 8':>17} {'nearer an 8':>12}")
    for method, name in MODELS.items():
        detector = trained.load_detector(name, device="cpu")
        to_input, to_normal = reconstruction_nearness(detector, anomalies, normal)
        nearer = float((to_normal < to_input).float().mean())
        figures[method] = {
            "model": name,
            "to_input": round(float(to_input.mean()), 4),
            "to_nearest_normal": round(float(to_normal.mean()), 4),
            "share_nearer_normal": round(100 * nearer, 2),
        }
        print(
            f"{method:<6} {figures[method]['to_input']:>13.4f} {figures[method]['to_nearest_normal']:>17.4f} "
            f"{100 * nearer:>11.1f}%"
        )
    if args.out:
        settings = {"anomalies": len(anomalies), "normal_class": 8, "models": MODELS}
        results.write_with_provenance(
            {"results": figures}, args.out, start=run_start, settings=settings, device=torch.device("cpu")
        )
        print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
