#!/usr/bin/env bash
# The work of the CI workflows, as one script that runs the same on any machine.
#
# .github/workflows/gpu.yml calls it step by step (one matrix job per part of a
# table, one job to merge the parts, one to execute the notebooks);
# .github/workflows/cpu.yml uses its `data` step. On a machine of your own:
#
#   bash scripts/gpu_ci.sh setup                 # .venv with the pinned versions (make setup)
#   bash scripts/gpu_ci.sh all out/              # the full profile on the GPU: tables, merge, notebooks
#   PROFILE=quick DEVICE=cpu TINY=1 bash scripts/gpu_ci.sh all /tmp/out   # a smoke test on a CPU
#
# Subcommands:
#   setup                      make setup, then check that DEVICE is usable
#   data [ROOT]                fetch the data sets of DATASETS that are missing into ROOT
#                              (default: $ANOMALY_EDU_DATA or ~/.cache/anomaly_edu)
#   table TABLE RANGE OUTDIR   one part of a table: OUTDIR/TABLE_RANGE.json
#   merge OUTDIR PARTDIR...    join the parts of each table found under PARTDIR...: OUTDIR/TABLE.json
#   notebooks OUTDIR [NB...]   execute notebooks in PROFILE into OUTDIR (default: every
#                              lecture and instructor version of an exercise); the book's
#                              way: papermill, or nbval in the quick profile
#   nbval OUTDIR [NB...]       the same in the quick profile: nbval executes the notebooks and
#                              compares the marked cells with their references (on a GPU with
#                              the decimals masked, scripts/nbval_gpu_sanitize.cfg)
#   all OUTDIR                 every part of every table, the merge, the notebooks and nbval:
#                              OUTDIR/parts, OUTDIR/results, OUTDIR/notebooks, OUTDIR/nbval
#
# Settings (environment variables):
#   PROFILE=full|quick  (default full)     DEVICE=cuda|cpu|...  (default cuda)
#   SEED=0              METHODS=ae,dae,ocsvm,dsvdd,arae (the README's Table 1 command)
#   TINY=1              smoke size: one epoch per method, the first class of each range,
#                       one table, two short notebooks. Only for checking the plumbing:
#                       its numbers mean nothing.
#   TABLES, RANGES      what `all` runs (default: the matrix of gpu.yml)
#   DATASETS            what `data` fetches (default: mnist magnetic-tile head-ct, all that
#                       the tests and notebooks read)
#   PY                  the Python to use (default .venv/bin/python, else python3)
#   KAGGLE_USERNAME, KAGGLE_KEY   let `data` download head CT from Kaggle
#   The data root is the package's: $ANOMALY_EDU_DATA, else ~/.cache/anomaly_edu.
#   The notebooks choose their device themselves (their DEVICE = None: the GPU if there is one).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

PROFILE=${PROFILE:-full}
DEVICE=${DEVICE:-cuda}
SEED=${SEED:-0}
TINY=${TINY:-0}
METHODS=${METHODS:-ae,dae,ocsvm,dsvdd,arae}
if [ -z "${PY:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi

# Keep these in step with the matrix of .github/workflows/gpu.yml.
if [ "$TINY" = 1 ]; then
  TABLES=${TABLES:-mnist}
  TINY_NOTEBOOKS="exercises/solutions/ex06b_masks.ipynb exercises/solutions/ex07b_seeds.ipynb"
else
  TABLES=${TABLES:-mnist fashion-mnist}
fi
RANGES=${RANGES:-0-4 5-9}
DATASETS=${DATASETS:-mnist magnetic-tile head-ct}

# Where the magnetic tiles and head CT come from (see anomaly_edu/data/magnetic_tile.py and
# anomaly_edu/data/medical.py). The repository's name ends with a full stop, hence "..git".
MAGNETIC_TILE_GIT=https://github.com/abin24/Magnetic-tile-defect-datasets..git
HEAD_CT_KAGGLE=https://www.kaggle.com/api/v1/datasets/download/felipekitamura/head-ct-hemorrhage

say() { echo "gpu_ci: $*"; }
die() {
  echo "gpu_ci: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

cmd_setup() {
  make -C "$REPO" setup
  "$PY" - "$DEVICE" <<'PYTHON'
import sys

import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit(f"gpu_ci: error: DEVICE={device} but torch sees no CUDA device (set DEVICE=cpu to run on a CPU)")
    print(f"GPU: {torch.cuda.get_device_name(torch.device(device))}")
PYTHON
}

# ------------------------------------------------------------------ data

fetch_magnetic_tiles() {
  local root=$1 tmp
  if [ -d "$root/magnetic_tile/MT_Free/Imgs" ]; then
    say "magnetic tiles: present"
    return
  fi
  [ ! -e "$root/magnetic_tile" ] || die "$root/magnetic_tile is incomplete: remove it and run again"
  say "magnetic tiles: cloning the authors' repository"
  tmp=$(mktemp -d "$root/.fetch.XXXXXX") # on the data root's disk, so that mv is a rename
  git clone --quiet --depth 1 "$MAGNETIC_TILE_GIT" "$tmp/clone"
  mkdir -p "$tmp/magnetic_tile"
  cp -R "$tmp"/clone/MT_* "$tmp/magnetic_tile/"
  mv "$tmp/magnetic_tile" "$root/magnetic_tile" # whole or not at all
  rm -rf "$tmp"
}

fetch_head_ct() {
  local root=$1 tmp labels images
  if [ -f "$root/head_ct/labels.csv" ]; then
    say "head CT: present"
    return
  fi
  if [ -z "${KAGGLE_USERNAME:-}" ] || [ -z "${KAGGLE_KEY:-}" ]; then
    # GitHub shows this line as a notice on the run's page.
    echo "::notice title=head CT not fetched::KAGGLE_USERNAME and KAGGLE_KEY are not set, and" \
      "Kaggle needs a login. Only two tests read head CT (tests/test_medical.py, test_real_head_ct_*):" \
      "they skip without it, and fail where the variable CI is set, as on GitHub."
    return
  fi
  [ ! -e "$root/head_ct" ] || die "$root/head_ct is incomplete: remove it and run again"
  say "head CT: downloading from Kaggle"
  tmp=$(mktemp -d "$root/.fetch.XXXXXX")
  # The key reaches curl on its standard input, not on its command line (which `ps` shows).
  printf 'user = "%s:%s"\n' "$KAGGLE_USERNAME" "$KAGGLE_KEY" |
    curl --config - --fail --silent --show-error --location --output "$tmp/head_ct.zip" "$HEAD_CT_KAGGLE"
  "$PY" -m zipfile -e "$tmp/head_ct.zip" "$tmp/unpacked"
  # Put it in the layout the loader reads: head_ct/labels.csv and head_ct/head_ct/*.png
  labels=$(find "$tmp/unpacked" -name labels.csv | head -n 1)
  images=$(find "$tmp/unpacked" -name 000.png | head -n 1)
  [ -n "$labels" ] && [ -n "$images" ] || die "the Kaggle archive has no labels.csv or 000.png"
  mkdir -p "$tmp/head_ct"
  cp "$labels" "$tmp/head_ct/labels.csv"
  cp -R "$(dirname "$images")" "$tmp/head_ct/head_ct"
  mv "$tmp/head_ct" "$root/head_ct"
  rm -rf "$tmp"
}

cmd_data() {
  local root=${1:-}
  if [ -z "$root" ]; then
    root=$("$PY" -c 'from anomaly_edu.data import data_root; print(data_root())')
  fi
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
  local name
  for name in $DATASETS; do
    case "$name" in
      # through the package's loader: torchvision downloads it and checks the files' MD5 sums
      mnist | fashion-mnist | cifar10) "$PY" -m anomaly_edu data --data-root "$root" --download "$name" ;;
      magnetic-tile) fetch_magnetic_tiles "$root" ;;
      head-ct) fetch_head_ct "$root" ;;
      *) die "unknown data set in DATASETS: $name (mnist, fashion-mnist, cifar10, magnetic-tile, head-ct)" ;;
    esac
  done
  "$PY" - "$root" <<'PYTHON'
import sys

from anomaly_edu.data.magnetic_tile import available_magnetic_tiles
from anomaly_edu.data.medical import available_medical

root = sys.argv[1]
print(f"magnetic tiles: {'present' if available_magnetic_tiles(root) else 'missing'}")
print(f"head CT: {'present' if available_medical(root)['head-ct'] else 'missing'}")
PYTHON
}

# ------------------------------------------------------------------ tables

cmd_table() {
  [ $# -eq 3 ] || die "usage: table TABLE RANGE OUTDIR"
  local table=$1 range=$2 outdir=$3 classes=$2
  local extra=()
  if [ "$TINY" = 1 ]; then
    classes=${range%%[-,]*} # the first class of the range
    extra=(--set ae.epochs=1 --set dae.epochs=1 --set dsvdd.epochs=1
      --set arae.epochs=1 --set arae.steps=1 --set ocsvm.max_train=200)
  fi
  mkdir -p "$outdir"
  say "table $table, classes $classes, profile $PROFILE on $DEVICE"
  "$PY" -m anomaly_edu reproduce "$table" --methods "$METHODS" --classes "$classes" \
    --profile "$PROFILE" --device "$DEVICE" --seed "$SEED" --no-progress "${extra[@]}" \
    --out "$outdir/${table}_${range}.json"
}

cmd_merge() {
  [ $# -ge 2 ] || die "usage: merge OUTDIR PARTDIR..."
  local outdir=$1 table i parts tables files
  shift
  mkdir -p "$outdir"
  mapfile -t parts < <(find "$@" -name '*.json' -type f | sort)
  [ ${#parts[@]} -gt 0 ] || die "no parts (*.json) under $*"
  # The table of each part, read from the part itself.
  mapfile -t tables < <("$PY" -c 'import json, sys; [print(json.load(open(p))["table"]) for p in sys.argv[1:]]' \
    "${parts[@]}")
  while read -r table; do
    files=()
    for i in "${!parts[@]}"; do
      if [ "${tables[$i]}" = "$table" ]; then files+=("${parts[$i]}"); fi
    done
    say "merge $table: ${files[*]}"
    "$PY" -m anomaly_edu merge "${files[@]}" --out "$outdir/$table.json" </dev/null
  done < <(printf '%s\n' "${tables[@]}" | sort -u)
}

# ------------------------------------------------------------------ notebooks

cmd_notebooks() {
  [ $# -ge 1 ] || die "usage: notebooks OUTDIR [NOTEBOOK...]"
  local outdir=$1
  shift
  if [ $# -eq 0 ] && [ "$TINY" = 1 ]; then
    # shellcheck disable=SC2086  # a list of paths without spaces
    set -- $TINY_NOTEBOOKS
  fi
  mkdir -p "$outdir"
  # The book's own way of running a notebook (scripts/notebook_runs.py): nbclient with the
  # PROFILE parameter (nbval in the quick profile), its kernel, the notebook's folder as
  # working folder, this checkout's package first on the path. The executed copies go to
  # OUTDIR, not to the book's _build/.
  "$PY" - "$REPO/scripts" "$outdir" "$PROFILE" "$@" <<'PYTHON'
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import build_course as bc
import notebook_runs as runs

outdir, profile, chosen = Path(sys.argv[2]).resolve(), sys.argv[3], sys.argv[4:]
# notebooks named relative to the repository root, as find_notebooks names them
notebooks = [Path(n).resolve().relative_to(bc.ROOT) if Path(n).is_absolute() else Path(n) for n in chosen]
notebooks = notebooks or bc.find_notebooks(bc.EXECUTE_CHECKED)
failed = []
with runs.kernel_environment(bc.ROOT):
    for notebook in notebooks:
        target = outdir / notebook
        target.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            run = runs.run_with_nbval if profile == runs.REFERENCE_PROFILE else runs.run_with_nbclient
            run(bc.ROOT / notebook, target, profile, bc.CELL_TIMEOUT_S)
        except Exception as error:  # run the others; the failed copy shows the traceback
            failed.append(notebook.as_posix())
            print(f"gpu_ci: {notebook}: FAILED: {runs.error_summary(error)}", flush=True)
            continue
        print(f"gpu_ci: {notebook}: {time.perf_counter() - start:.0f} s ({profile})", flush=True)
if failed:
    sys.exit(f"gpu_ci: error: {len(failed)} notebook(s) failed: {', '.join(failed)}")
PYTHON
}

cmd_all() {
  [ $# -eq 1 ] || die "usage: all OUTDIR"
  local outdir=$1 table range
  for table in $TABLES; do
    for range in $RANGES; do
      cmd_table "$table" "$range" "$outdir/parts"
    done
  done
  cmd_merge "$outdir/results" "$outdir/parts"
  cmd_notebooks "$outdir/notebooks"
  cmd_nbval "$outdir/nbval"
}

cmd_nbval() {
  [ $# -ge 1 ] || die "usage: nbval OUTDIR [NOTEBOOK...]"
  PROFILE=quick cmd_notebooks "$@"
}

command=${1:-help}
[ $# -gt 0 ] && shift
case "$command" in
  setup) cmd_setup "$@" ;;
  data) cmd_data "$@" ;;
  table) cmd_table "$@" ;;
  merge) cmd_merge "$@" ;;
  notebooks) cmd_notebooks "$@" ;;
  nbval) cmd_nbval "$@" ;;
  all) cmd_all "$@" ;;
  help | -h | --help) usage ;;
  *)
    usage >&2
    die "unknown subcommand: $command"
    ;;
esac
