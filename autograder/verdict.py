"""A verdict as data: its status, the type it is stored under in the graded cell's result,
and reading it back. What the feedback pages, the class report and the CSVs read, without
importing torch or anything that judges (score.Verdict makes the data)."""

# A verdict's status: what the report, the CSVs and the views read.
RIGHT, WRONG, ERROR, NOT_ATTEMPTED, REFUSED, GRADER_ERROR = (
    "right", "wrong", "error", "not attempted", "refused", "grader error")
STATUSES = [RIGHT, WRONG, ERROR, NOT_ATTEMPTED, REFUSED, GRADER_ERROR]
VERDICT = "application/json"  # the graded cell's result carries its verdict's data under this type


def verdict_of(cell):
    """The verdict data (score.Verdict.data) a graded cell's result carries, or None: written by
    the trusted grader, read as data (a status of STATUSES, numbers for points), never as words."""
    for out in (cell or {}).get("outputs", []):
        d = out.get("data", {}).get(VERDICT) if out.get("output_type") == "execute_result" else None
        if isinstance(d, dict) and d.get("status") in STATUSES and isinstance(d.get("message"), str) \
                and all(isinstance(d.get(k), (int, float)) for k in ("score", "points")):
            return d
    return None
