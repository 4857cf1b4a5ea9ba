"""The benchmarks run: benchmarks/full_table_speed.py in its smallest setting, on real MNIST."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_full_table_speed_prints_seconds_per_epoch_and_a_projection(mnist_root):
    command = [sys.executable, str(ROOT / "benchmarks" / "full_table_speed.py")]
    command += ["--max-train", "32", "--max-test", "500", "--epochs", "1"]
    env = {**os.environ, "ANOMALY_EDU_DATA": str(mnist_root)}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    for method in ("ae", "dae", "arae"):
        assert re.search(rf"^{method} +ten stacked models: [0-9.]+ s per epoch", out, re.MULTILINE), out
    assert re.search(r"^projected total .*: [0-9.]+ min = [0-9.]+ h", out, re.MULTILINE), out
    assert "REDUCED RUN" in out and "one AE alone" in out
