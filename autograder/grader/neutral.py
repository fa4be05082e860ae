"""Text a learner controls, made inert before it reaches the instructor's terminal or a CSV.

A student id, a notebook's file name, a verdict quoting the learner's code, a name in the
gradebook: any of them may hold terminal escape sequences (ESC, CSI, OSC, a carriage return),
other C0 or C1 controls, or bidi overrides (U+202E) that rewrite or reorder what the instructor
reads; and in a CSV, a cell starting with `=`, `+`, `-` or `@` is a formula to a spreadsheet.

The rule, for every character Python's str.isprintable() rejects (controls, format and bidi
characters, line and paragraph separators, surrogates, unassigned code points, spaces other
than ' '): it is written as its escape (`\\x1b`, `\\u202e`), visible and inert. A CSV text cell
whose first character (after spaces) could start a formula gets a leading `'` (OWASP's advice
against CSV injection); numbers stay numbers.
"""
import numbers

FORMULA = set("=+-@\uff1d\uff0b\uff0d\uff20")  # and their full-width forms, which spreadsheets read too


def text(value, newlines=False):
    """str(value) with every character that is not printable as its escape (newlines kept
    with newlines=True, for a message of several lines)."""
    s = str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or (newlines and c == "\n")
                   else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in s)


def cell(value):
    """A CSV cell: a number as it is, None as empty, any other value as inert text."""
    if value is None:
        return ""
    if isinstance(value, numbers.Number):
        return value
    s = text(value)
    return "'" + s if s.lstrip(" ")[:1] in FORMULA else s


def row(values):
    """A CSV row (a sequence, or a dict for csv.DictWriter) with each cell made inert."""
    if isinstance(values, dict):
        return {k: cell(v) for k, v in values.items()}
    return [cell(v) for v in values]


def listing(values):
    """Ids for a message: each inert, joined by commas."""
    return ", ".join(text(v) for v in values)
