"""`python -m nbgrader`, 1.5 s sooner: how the demo and the tests run nbgrader's commands
(course.nbgrader).

It runs nbgrader's own `main`, the code an instructor's `nbgrader` runs, with one optional
module left out. jsonschema checks the "iri" format only where rfc3987_syntax imports (it
imports it under suppress(ImportError)), and that module compiles about 35 grammars when it is
imported: 1.1 s of every process that imports nbformat, more than half of a short nbgrader
command (2.6 s of CPU for `nbgrader list`, 1.15 s without). No schema of nbformat, nbgrader or
Jupyter uses that format. jobs.py leaves it out, for every grading process, when it is imported.
"""
from . import jobs  # noqa: F401  (first: it leaves out the grammar, before nbgrader imports jsonschema)

from nbgrader.apps.nbgraderapp import main  # noqa: E402

if __name__ == "__main__":
    main()
