"""The book's pages made from the build's runs (scripts/build_course.py stages them).

- ``fetch_assets``: the offline viewing assets (MathJax, require.js, the widget
  manager) from npm, at the versions of the lock file;
- ``stage_notebook``: a notebook as the book shows it (local Colab badge, no
  nbval markers, the injected parameters hidden, one shared plotly.js);
- ``statistics_table``: the run statistics page's table, from the statistics
  the build writes to ``_build/executed/run_statistics.json`` (with
  ``machine_description``).

Nothing here knows where the course lies: the callers pass the paths.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import nbformat
from notebook_runs import INJECTED_TAG, BuildError, unmarked

# target folder in the assets -> (folder in node_modules, files or folders to copy)
ASSET_FILES = {
    "mathjax": (
        "mathjax/es5",
        [
            "tex-chtml.js",  # the component Sphinx loads
            "output/chtml/fonts",  # fonts of the CHTML output
            "input/tex/extensions",  # TeX packages loaded on demand (\require, autoload)
            "ui",
            "a11y",
            "sre",  # context menu and accessibility, loaded on demand
        ],
    ),
    "requirejs": ("requirejs", ["require.js"]),
    "html-manager": ("@jupyter-widgets/html-manager/dist", ["embed-amd.js"]),
}
# The assets count as present when these files exist and the lock file is the
# one they were installed from (a dot file: Sphinx does not publish it).
ASSET_MARKERS = ["mathjax/tex-chtml.js", "requirejs/require.js", "html-manager/embed-amd.js"]
ASSET_LOCK_STAMP = ".package-lock.sha256"

STATISTICS_MARKER = "<!-- RUN_STATISTICS_TABLE -->"  # the line of book/run_statistics.md the table replaces
# The notebooks' "Open in Colab" badge is an image on Google's server. The book
# must load nothing from the network, so its pages show a local drawing instead.
REMOTE_COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_COLAB_BADGE = "book/images/open-in-colab.svg"
# plotly's notebook renderer embeds all of plotly.js (about 5 MB) in each notebook
# that shows a figure. The book serves one copy instead, taken from the installed
# plotly package (the version that drew the figures), and its pages load that copy.
# plotly.js sets window.Plotly and never calls require.js's `define`.
PLOTLY_JS = "plotly/plotly.min.js"  # in the offline assets, so in _static/ too
# Metadata of a run that is about the machine it ran on, not for readers.
MACHINE_METADATA = ("papermill", "nbval_record")


def lock_digest(manifest: Path) -> str:
    """sha256 of the npm lock file in the ``manifest`` folder."""
    return hashlib.sha256((manifest / "package-lock.json").read_bytes()).hexdigest()


def assets_present(manifest: Path, assets: Path) -> bool:
    """Whether ``assets`` holds the files of the current lock file."""
    stamp_file = assets / ASSET_LOCK_STAMP
    return (
        all((assets / marker).is_file() for marker in ASSET_MARKERS)
        and stamp_file.is_file()
        and stamp_file.read_text().strip() == lock_digest(manifest)
    )


def fetch_assets(manifest: Path, prefix: Path, assets: Path, force: bool = False) -> Path:
    """Install the npm packages pinned in ``manifest`` (package.json and its lock
    file) under ``prefix``, and copy the files the book needs into ``assets``."""
    if assets_present(manifest, assets) and not force:
        print(f"assets: present in {assets}, skipping npm", flush=True)
        return assets
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("assets: `npm` not found; install Node.js and npm (Debian: apt-get install nodejs npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(manifest / name, prefix / name)
    command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(prefix)]
    print("assets: " + " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=prefix)
    if result.returncode != 0:
        raise BuildError(f"assets: npm ci failed (exit code {result.returncode})")
    # Copy into a temporary folder, then swap it in: a failed copy leaves no half-filled folder.
    staging = prefix / "offline_assets.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for target, (source, parts) in ASSET_FILES.items():
        for part in parts:
            src, dst = prefix / "node_modules" / source / part, staging / target / part
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    (staging / ASSET_LOCK_STAMP).write_text(lock_digest(manifest) + "\n")
    shutil.rmtree(assets, ignore_errors=True)
    staging.rename(assets)
    print(f"assets: copied into {assets}", flush=True)
    return assets


def write_plotly_js(assets: Path) -> None:
    """Write the installed plotly's plotly.js into the book's offline assets."""
    from plotly.offline import get_plotlyjs

    target = assets / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(get_plotlyjs(), encoding="utf-8")


def stage_notebook(source: Path, target: Path, book_src: Path, keep_outputs: bool) -> None:
    """Copy a notebook into the staged book (rooted at ``book_src``), changed for
    the book's pages:

    - its Colab badge shows the local image;
    - its code has no nbval markers (they are for CI, not for readers);
    - the injected parameters cell is hidden (it repeats the parameters cell);
    - its outputs load the book's copy of plotly.js, not the one plotly embedded;
    - the run's records of this machine (papermill's, nbval_record's) are dropped;
    - unless keep_outputs, it has no outputs (exercise pages are shown as handed out).
    """
    from plotly.offline import get_plotlyjs

    nb = nbformat.read(source, as_version=4)
    # Relative links: the HTML pages and _static/ lie as book_src's files do.
    badge = Path(os.path.relpath(book_src / LOCAL_COLAB_BADGE, target.parent)).as_posix()
    plotly_js = Path(os.path.relpath(book_src / "_static" / PLOTLY_JS, target.parent)).as_posix()
    embedded_plotly, linked_plotly = f"<script>{get_plotlyjs()}</script>", f'<script src="{plotly_js}"></script>'
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(REMOTE_COLAB_BADGE, badge)
            continue
        cell.source = unmarked(cell.source)
        if INJECTED_TAG in cell.metadata.get("tags", []):
            cell.metadata["tags"] = cell.metadata["tags"] + ["remove-cell"]
        elif not keep_outputs:
            cell.outputs, cell.execution_count = [], None
        else:
            for output in cell.outputs:
                if "text/html" in output.get("data", {}):
                    output.data["text/html"] = output.data["text/html"].replace(embedded_plotly, linked_plotly)
    if not keep_outputs:
        nb.metadata.pop("widgets", None)
    for key in MACHINE_METADATA:
        nb.metadata.pop(key, None)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def machine_description() -> dict:
    """Python, torch, CPU and GPU of this machine, for the run statistics."""
    import torch

    from anomaly_edu.experiments.results import cpu_name

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def side_by_side_line(side_by_side: dict) -> str:
    """How the notebooks shared the machine, for the statistics page."""
    at_once = side_by_side.get("notebooks", 1)
    if at_once <= 1:
        return "- **Notebooks at once:** one (each had the whole machine)"
    return (
        f"- **Notebooks at once:** {at_once}, {side_by_side.get('threads_each')} thread(s) each (and under "
        "`make test` the other tests run beside them); a notebook run alone on this machine, with every core, "
        "takes less than the wall time below"
    )


def statistics_table(statistics: dict) -> str:
    """The run statistics as MyST markdown, for book/run_statistics.md."""
    machine, runs = statistics.get("machine", {}), statistics.get("notebooks", {})
    lines = [
        f"- **Profile:** `{statistics.get('profile')}`",
        f"- **Statistics written:** {statistics.get('date')}",
        f"- **Python:** {machine.get('python')}, **torch:** {machine.get('torch')}",
        f"- **CPU:** {machine.get('cpu')} ({machine.get('cpu_count')} logical cores)",
        f"- **GPU:** {machine.get('gpu') or 'none'}",
        side_by_side_line(statistics.get("side_by_side", {})),
        "",
        "The slowest check cell is the longest of an instructor version's graded cells: what autograding",
        "a submission's check takes, on top of running the student's own code.",
        "",
        "| Notebook | Kind | Wall time (s) | Slowest check cell (s) | Executed (UTC) | Outcome |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, run in sorted(runs.items()):
        check = f"{run['slowest_check_s']:.1f}" if "slowest_check_s" in run else ""
        outcome = run["outcome"].replace("|", "\\|")
        if run.get("differences"):
            outcome += f" ({len(run['differences'])} cells, listed below)"
        lines.append(f"| `{name}` | {run['kind']} | {run['wall_s']:.1f} | {check} | {run['executed']} | {outcome} |")
    lines.append(f"| **total** | | **{sum(run['wall_s'] for run in runs.values()):.1f}** | | | |")
    differences = [line for run in runs.values() for line in run.get("differences", [])]
    if differences:
        lines += ["", "Marked outputs beyond their tolerance in this run (the pages show this run's outputs):", ""]
        lines += [f"- `{line}`" for line in differences]
    return "\n".join(lines)
