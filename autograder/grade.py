"""`python -m autograder.grade`: the command of autograder/grader/grade.py (the instructor's side)."""
if __name__ == "__main__":
    import sys

    from autograder.grader.grade import main
    sys.exit(main())
