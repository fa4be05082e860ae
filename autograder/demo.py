"""`python -m autograder.demo`: the command of autograder/grader/demo.py (the instructor's side)."""
if __name__ == "__main__":
    import sys

    from autograder.grader.demo import main
    sys.exit(main())
