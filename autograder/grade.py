"""`python -m autograder.grade`: the command of autograder/grader/grade.py (the instructor's side)."""
if __name__ == "__main__":
    import os
    import signal

    def _stopped(signum, frame):  # while Python loads, before anything is started: nothing to stop
        os.write(2, b"\ninterrupted while starting: nothing was graded.\n")
        os._exit(130)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    from autograder.grader.grade import exit_without_teardown, main
    exit_without_teardown(main())
