"""Build the nbgrader source notebooks of the assignment in source/backprop_ninja/.

    python tools/build_exercises.py
    nbgrader generate_assignment backprop_ninja --force   # then commit release/

Each notebook is a list of cells (tools/nb_ex*.py) made with the constructors of
tools/cells.py; the answers come from tools/solutions.py. Cell ids are stable grade ids. Under
each notebook's title and introduction (ending with what to do when a cell raises:
cells.introduction) comes the same first code cell, which installs the course on Colab
(cells.install_cell).
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

import nb_ex1
import nb_ex2
import nb_ex3
import nb_ex4
from autograder.exercises import EXERCISES
from cells import install_cell, introduction

SOURCE = Path(__file__).resolve().parent.parent / "source" / "backprop_ninja"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
          "language_info": {"name": "python"}}


def build(dest=SOURCE):
    """Write the four instructor notebooks into dest; return their paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, module in [("ex1", nb_ex1), ("ex2", nb_ex2), ("ex3", nb_ex3), ("ex4", nb_ex4)]:
        title, *rest = module.CELLS
        assert title.cell_type == "markdown" and title.source.startswith("# "), f"{key} opens with its title"
        nb = new_notebook(cells=[introduction(title), install_cell(), *rest], metadata=KERNEL)
        nbformat.validate(nb)
        paths.append(dest / EXERCISES[key].notebook)
        nbformat.write(nb, paths[-1])
    return paths


def main():
    for path in build():
        print(f"wrote {path.relative_to(SOURCE.parent.parent)} ({len(nbformat.read(path, as_version=4).cells)} cells)")


if __name__ == "__main__":
    main()
