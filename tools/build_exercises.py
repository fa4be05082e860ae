"""Build the nbgrader source notebooks of the assignment in source/backprop_ninja/.

    python tools/build_exercises.py
    nbgrader generate_assignment backprop_ninja --force   # then commit release/

Each notebook is a list of cells (tools/nb_ex*.py) made with the constructors of
tools/cells.py; the answers come from tools/solutions.py. Cell ids are stable grade ids.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

import nb_ex1
import nb_ex2
import nb_ex3
import nb_ex4
from autograder.exercises import EXERCISES

SOURCE = Path(__file__).resolve().parent.parent / "source" / "backprop_ninja"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
          "language_info": {"name": "python"}}


def main():
    SOURCE.mkdir(parents=True, exist_ok=True)
    for key, module in [("ex1", nb_ex1), ("ex2", nb_ex2), ("ex3", nb_ex3), ("ex4", nb_ex4)]:
        nb = new_notebook(cells=module.CELLS, metadata=KERNEL)
        nbformat.validate(nb)
        path = SOURCE / EXERCISES[key].notebook
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(SOURCE.parent.parent)} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    main()
