"""`python -m autograder.report`: the command of autograder/grader/report.py (the instructor's side)."""
if __name__ == "__main__":
    import sys

    from autograder.grader.report import main
    sys.exit(main())
