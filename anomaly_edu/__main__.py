"""``python -m anomaly_edu ...``: the command line, in :mod:`anomaly_edu.experiments.cli`."""

import sys

from .experiments.cli import main

sys.exit(main())
