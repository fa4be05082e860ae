"""The trusted grader: the instructor's side, which a learner's install never imports.

The learner's side (autograder/: data, model, compare, the checks, the in-kernel score) imports
nothing from here; this package imports from there, never the other way (tests/test_environment.py).
"""
