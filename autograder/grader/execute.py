"""The learner's notebook, run in the sandboxed kernel within bounds that bind.

nbgrader's Execute gives each cell a timeout and nothing more: 800 cells of `sleep(0.95)` run
for 13 minutes, a cell that outlives its timeout leaves the kernel busy (an interrupt does not
reach a kernel inside bubblewrap) and nbgrader then fails the whole learner, and a cell's
outputs are kept whatever their size. SandboxedExecute bounds each notebook instead:

- time: the notebook gets NOTEBOOK_SECONDS and all of one learner's notebooks LEARNER_SECONDS
  together; a cell gets what is left (at most nbgrader's timeout). When the time is up, or a
  cell times out, or the kernel dies, the rest of the notebook is not run, and the cell where it
  stopped says why;
- cells: at most MAX_CELLS code cells run per notebook;
- outputs: one output of more than MAX_OUTPUT_BYTES, or any beyond MAX_NOTEBOOK_OUTPUT_BYTES
  for the notebook, is left out, with a line saying so.

None of this costs points: the score comes from the answer cells' sources, replayed apart
(trusted.TrustedScores), whatever the kernel did.
"""
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

from . import kernel_server


def size_of(obj):
    """Characters in an output's strings (its data, text or traceback), without copying them."""
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(size_of(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(size_of(v) for v in obj)
    return 8


def note(text):
    return new_output("stream", name="stderr", text=f"[grader] {text}\n")


class SandboxedExecute(Execute):
    """nbgrader's Execute, with the learner's kernel inside the sandbox (kernel_server.py) and the
    bounds above. Each is a traitlet, so nbgrader_config.py (or the command line) can set it."""

    notebook_seconds = Integer(180, help="Seconds one notebook's cells run at most, all together").tag(config=True)
    learner_seconds = Integer(360, help="Seconds all of one learner's notebooks run at most").tag(config=True)
    max_cells = Integer(1000, help="Code cells of one notebook run at most").tag(config=True)
    max_output_bytes = Integer(2 * 2**20, help="Characters of one output kept at most").tag(config=True)
    max_notebook_output_bytes = Integer(8 * 2**20, help="Characters of one notebook's outputs kept").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs["kernel_manager_class"] = kernel_server.SandboxedKernelManager
        super().__init__(*args, **kwargs)

    def learner_spent(self):
        """{student: seconds their notebooks ran} for this nbgrader run (kept on its converter, so
        that a later run, as in formgrader's server, starts afresh)."""
        obj = self
        while obj is not None and getattr(obj, "coursedir", None) is None:
            obj = getattr(obj, "parent", None)
        holder = obj if obj is not None else SandboxedExecute
        if "_ninja_spent" not in vars(holder):
            setattr(holder, "_ninja_spent", {})
        return vars(holder)["_ninja_spent"]

    def preprocess(self, nb, resources=None, km=None):
        student = (resources or {}).get("nbgrader", {}).get("student", "")
        spent = self.learner_spent()
        start = time.monotonic()
        budget = min(self.notebook_seconds, self.learner_seconds - spent.get(student, 0))
        self._deadline, self._budget = start + budget, budget
        self._stopped, self._told = "", False
        self._cells_run = self._output_size = 0
        self._cut = set()  # cells whose outputs were cut
        self.timeout_func = lambda cell: max(1, int(min(self.timeout or 1e9, self._deadline - time.monotonic()) + 0.999))
        try:
            return super().preprocess(nb, resources, km)
        finally:
            spent[student] = spent.get(student, 0) + time.monotonic() - start

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if not self._stopped and time.monotonic() > self._deadline - 0.5:
            self._stopped = (f"the time for running this notebook ({self._budget:.0f} s) ran out here: "
                             "this cell and the ones below were not run")
        elif not self._stopped and self._cells_run >= self.max_cells:
            self._stopped = f"only the first {self.max_cells} code cells are run: this cell and the ones below were not"
        if self._stopped:
            cell.outputs, cell.execution_count = [], None
            if not self._told:
                cell.outputs.append(note(self._stopped + " (your answers are scored all the same)"))
                self._told = True
            return cell, resources
        self._cells_run += 1
        try:
            return super().preprocess_cell(cell, resources, index)
        except (CellTimeoutError, DeadKernelError) as e:
            why = ("the kernel died while running this cell" if isinstance(e, DeadKernelError) else
                   "this cell ran out of time")
            self._stopped = f"{why}: the cells below were not run"
            cell.outputs.append(note(self._stopped + " (your answers are scored all the same)"))
            self._told = True
            self.shutdown_kernel = "immediate"  # a busy kernel answers no shutdown request
            return cell, resources

    async def _async_handle_timeout(self, timeout, cell=None):
        # no interrupt: it does not reach the sandboxed kernel, which would stay busy
        raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)

    def fits(self, content, cell_index):
        """Whether an output of this content may be kept; if not, the cell says so (once)."""
        size = size_of(content.get("data") or content.get("text") or content.get("traceback") or "")
        if size <= self.max_output_bytes and self._output_size + size <= self.max_notebook_output_bytes:
            self._output_size += size
            return True
        return False

    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") in ("stream", "display_data", "execute_result", "error") and not self.fits(
                msg.get("content", {}), cell_index):
            if cell_index not in self._cut:
                self._cut.add(cell_index)
                outs.append(note(f"outputs of this cell were left out: one output may hold {self.max_output_bytes:,} "
                                 f"characters, a notebook's outputs {self.max_notebook_output_bytes:,}"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):
        size = size_of(msg.get("content", {}).get("data") or "")
        if size > self.max_output_bytes:
            return None
        return super()._update_display_id(display_id, msg)
