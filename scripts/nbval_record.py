"""A pytest plugin for scripts/build_course.py: keeps the run that nbval checked.

nbval executes a notebook cell by cell and compares the cells marked
``# NBVAL_CHECK_OUTPUT`` with the reference outputs stored in the notebook,
but it throws the outputs away afterwards. With this plugin,

    pytest NOTEBOOK --nbval-lax -p nbval_record --record-to EXECUTED.ipynb

also writes the notebook with every output nbval received (and the state of
its widgets, for the book), whether or not a cell failed. Its metadata
(``nbval_record``, read back with ``cell_seconds`` and ``cell_problems``) keeps
each code cell's running time and, for each cell that nbval failed, why: its
outputs differ, or an error. That is where the build reads a run's failures,
not from pytest's printed report. The cells themselves keep the metadata they
have in the notebook, so the run is cached under the notebook's own code
(jupyter-cache hashes the cells' metadata too). The book then shows the very
run that the checks passed on, and nothing is executed twice.

It also keeps a long cell's output from being lost: nbval reads the kernel's
output messages only after a cell has finished, and the queue that holds them
meanwhile drops what comes after its first thousand messages (a long progress
bar sends that many), the cell's last message too; nbval then fails the cell
after waiting 5 s for it. The plugin reads them while nbval waits instead.
"""

from __future__ import annotations

import collections
import queue
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbval.plugin import IPyNbCell, NbCellError

# The notebook's metadata key of what this plugin records (scripts/build_course.py reads it).
RECORD_KEY = "nbval_record"
OUTPUTS_DIFFER = "outputs differ"


def cell_seconds(nb: nbformat.NotebookNode) -> dict[int, float]:
    """How long each code cell ran, by code cell number (only the cells that ran)."""
    return {int(number): seconds for number, seconds in nb.metadata.get(RECORD_KEY, {}).get("seconds", {}).items()}


def cell_problems(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Why nbval failed each cell it failed, by code cell number: OUTPUTS_DIFFER
    (and the numbers out of tolerance), or "error: " and the error."""
    return {int(number): why for number, why in nb.metadata.get(RECORD_KEY, {}).get("problems", {}).items()}


def pytest_addoption(parser) -> None:
    parser.addoption("--record-to", default=None, help="write the executed notebook (nbval's outputs) here")


def pytest_configure(config) -> None:
    target = config.getoption("record_to")
    if target:
        config.pluginmanager.register(Recorder(target), "nbval-recorder")


class Recorder:
    """Collects each code cell's outputs while nbval runs one notebook, then writes it."""

    def __init__(self, target: str):
        self.target = target
        self.notebook_file = None  # nbval's collector of the notebook
        self.outputs: dict[int, list] = {}  # code cell number -> its outputs
        self.seconds: dict[int, float] = {}  # code cell number -> how long it ran
        self.problems: dict[int, str] = {}  # code cell number -> why nbval failed it
        # nbclient's bookkeeping of widget messages, as when papermill executes a notebook
        self.widgets = NotebookClient(nbformat.v4.new_notebook())

    @pytest.hookimpl(trylast=True)  # after nbval has started the notebook's kernel
    def pytest_runtest_setup(self, item) -> None:
        if isinstance(item, IPyNbCell) and self.notebook_file is None:
            self.notebook_file = item.parent
            keep_outputs_flowing(item.parent.kernel)
            self.listen_to_widgets(item.parent)

    def listen_to_widgets(self, notebook_file) -> None:
        """nbval skips the kernel's widget messages: see each one before it does."""
        receive = notebook_file.get_kernel_message

        def receive_and_keep_widget_state(*args, **kwargs):
            message = receive(*args, **kwargs)
            if message["msg_type"] in ("comm_open", "comm_msg"):
                self.widgets.handle_comm_msg([], message, 0)
            return message

        notebook_file.get_kernel_message = receive_and_keep_widget_state

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        start = time.perf_counter()
        outcome = yield  # nbval runs the cell (and may fail it); its outputs are kept either way
        if isinstance(item, IPyNbCell):
            self.outputs[item.cell_num] = list(item.test_outputs or [])  # None: nbval did not run it
            self.seconds[item.cell_num] = round(time.perf_counter() - start, 2)
            if outcome.excinfo is not None:
                self.problems[item.cell_num] = problem(outcome.excinfo[1])

    def pytest_sessionfinish(self) -> None:
        if self.notebook_file is None:
            return
        nb = nbformat.read(str(self.notebook_file.path), as_version=4)
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        for number, cell in enumerate(code_cells):
            ran = number in self.outputs
            cell.outputs = [nbformat.from_dict(output) for output in self.outputs.get(number, [])]
            cell.execution_count = number + 1 if ran else None
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = cell.execution_count
        # JSON keys are strings: the cell numbers as text (cell_seconds and cell_problems undo it)
        nb.metadata[RECORD_KEY] = {
            "seconds": {str(number): seconds for number, seconds in sorted(self.seconds.items())},
            "problems": {str(number): why for number, why in sorted(self.problems.items())},
        }
        self.widgets.nb = nb
        self.widgets.set_widgets_metadata()
        nbformat.write(nb, self.target)


def problem(error: BaseException) -> str:
    """Why nbval failed a cell: OUTPUTS_DIFFER when the cell ran and printed
    something other than its reference (followed by the numbers out of their
    tolerance, where nbval_tolerance named some), else the error in one line."""
    message = str(error).strip()
    if not (isinstance(error, NbCellError) and message == "Cell outputs differ"):
        return f"error: {(message.splitlines() or [type(error).__name__])[0]}"
    beyond = [line.strip() for line in str(error.inner_traceback).splitlines() if "beyond the tolerance" in line]
    return ": ".join([OUTPUTS_DIFFER, *beyond[:1]])


def keep_outputs_flowing(kernel) -> None:
    """While nbval waits for a cell to finish (on the kernel's shell channel),
    read the output messages (iopub) as they come, and give them to nbval when
    it asks for them, in order."""
    read = kernel.get_message
    waiting = collections.deque()

    def read_keeping_outputs(stream, timeout=None):
        if stream == "iopub":
            return waiting.popleft() if waiting else read("iopub", timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return read(stream, timeout=0.1)
            except queue.Empty:
                pass
            while True:
                try:
                    waiting.append(read("iopub", timeout=0))
                except queue.Empty:
                    break
            if deadline is not None and time.monotonic() > deadline:
                raise queue.Empty

    kernel.get_message = read_keeping_outputs
