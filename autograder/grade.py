"""`python -m autograder.grade`: the command of autograder/grader/grade.py (the instructor's side)."""
if __name__ == "__main__":
    from autograder.grader.grade import exit_without_teardown, main
    exit_without_teardown(main())
