"""The course's pages draw a notebook's math as images (no MathJax may load), within a budget
per notebook: a learner's markdown can hold any number of formulas of any length, and each
costs the instructor's formgrader and feedback pages about 10 ms or more to draw."""
import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook

from autograder.grader import mathimages, pages
from autograder.grader.course import ROOT


def drawn(nb):
    pages.make_safe(nb)
    return sum(c.source.count('class="math"') for c in nb.cells)


def test_every_formula_of_the_courses_notebooks_is_drawn():
    nb = nbformat.read(ROOT / "source" / "backprop_ninja" / "ex3_batchnorm.ipynb", as_version=4)
    assert drawn(nb) == 37


def test_a_notebook_draws_at_most_its_budget_and_shows_the_rest_as_code():
    many = new_notebook(cells=[new_markdown_cell(" ".join(f"$x_{{{i}}}$" for i in range(c, c + 1500)))
                               for c in range(0, 4500, 1500)])
    assert drawn(many) == mathimages.FORMULAS  # across its cells: one budget per notebook
    assert "<code>x_{4499}</code>" in many.cells[-1].source
    long = new_notebook(cells=[new_markdown_cell("$" + "x+" * mathimages.CHARACTERS + "x$ and $y$")])
    assert drawn(long) == 1 and "<code>x+x+" in long.cells[0].source


def test_each_formula_of_the_course_is_drawn_once_per_process_and_a_long_one_never_kept():
    """Every learner's notebook repeats the course's formulas: a second learner's page draws
    none of them again, and is the same page; a formula longer than the course's is drawn each
    time, so what a process keeps stays small."""
    read = lambda: nbformat.read(ROOT / "source" / "backprop_ninja" / "ex3_batchnorm.ipynb", as_version=4)  # noqa: E731
    first, second = read(), read()
    mathimages._cached.cache_clear()
    pages.make_safe(first)
    misses = mathimages._cached.cache_info().misses
    pages.make_safe(second)
    info = mathimages._cached.cache_info()
    assert misses > 0 and info.misses == misses and info.hits >= 37
    assert [c.source for c in first.cells] == [c.source for c in second.cells]
    tex = "x+" * mathimages.CACHED_LENGTH + "x"
    assert mathimages.tex_image(tex) == mathimages.tex_image(tex) and mathimages._cached.cache_info() == info
