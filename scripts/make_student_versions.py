"""Make the student versions of the exercises from the instructor versions.

    python scripts/make_student_versions.py           # write exercises/*.ipynb
    python scripts/make_student_versions.py --check   # exit 1 if they are out of date

The instructor versions live in ``exercises/solutions/`` and mark each answer the
way nbgrader does: code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
in cells whose metadata says ``nbgrader.solution``. The student version replaces
each such block with ``# YOUR CODE HERE`` and ``raise NotImplementedError()``
(markdown answers with ``YOUR ANSWER HERE``), drops every output and nbval's
``# NBVAL_CHECK_OUTPUT`` markers (with their reference outputs and tolerances), and tags each
code cell from the first answer on with ``raises-exception``: until the student
has answered, those cells are expected to stop with an error, and the tag tells
notebook runners (papermill, nbclient, the book) that this is fine.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
from notebook_runs import unmarked  # beside this script: a cell without nbval's marker and tolerance

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "exercises" / "solutions"
STUDENT = ROOT / "exercises"
BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*(\n|$)", re.M | re.S)


def strip_solutions(source: str, markdown: bool = False) -> str:
    """Replace every solution block of one cell with a stub."""
    if "### BEGIN SOLUTION" in source and not BLOCK.search(source):
        raise ValueError(f"unmatched '### BEGIN SOLUTION' in cell:\n{source}")

    def stub(match):
        indent = match.group(1)
        if markdown:
            return "YOUR ANSWER HERE\n"
        return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n"

    return BLOCK.sub(stub, source).rstrip("\n")


def student_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of one instructor notebook."""
    nb = copy.deepcopy(notebook)
    answered = False
    for cell in nb.cells:
        is_solution = cell.metadata.get("nbgrader", {}).get("solution", False)
        if is_solution:
            cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
            answered = True
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source = unmarked(cell.source)  # the reference is the instructor's run, not the student's
            tags = cell.metadata.get("tags", [])
            if answered and "raises-exception" not in tags:
                cell.metadata["tags"] = tags + ["raises-exception"]
    if not answered:
        raise ValueError("no cell is marked as a solution (nbgrader.solution); nothing to hide")
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the student versions are current")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOLUTIONS.glob("*.ipynb")):
        target = STUDENT / source.name
        text = nbformat.writes(student_version(nbformat.read(source, as_version=4))) + "\n"
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target.relative_to(ROOT))
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("out of date (run `make student`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
