import torch

from autograder.check import report
from autograder.compare import compare


def test_a_broadcastable_wrong_shape_is_not_exact():
    """Is a (32, 1) gradient for a (32, 27) tensor reported as the wrong shape, although
    broadcasting would make the lecture's cmp say exact: True?"""
    t = torch.ones(32, 27)
    row = compare("x", torch.ones(32, 1), t)
    assert not row.exact and not row.approximate and "wrong shape" in str(row)
    assert "maxdiff" not in str(row), "a wrong shape has no maxdiff to show"


def test_size_one_dimensions_are_accepted_with_a_note():
    """Is the lecture's dbnmeani of shape (64,) accepted for a (1, 64) tensor, with a note?"""
    t = torch.randn(1, 64)
    row = compare("bnmeani", t.view(64), t)
    assert row.exact and row.approximate and row.note == "(64,) accepted for (1, 64)"


def test_missing_and_non_tensor_answers_are_reported(capsys):
    t = torch.zeros(3)
    rows = report(["a", "b", "c"], {"da": t, "db": 3.0}, {"a": t, "b": t, "c": t})
    out = capsys.readouterr().out
    assert [r.ok for r in rows] == [True, False, False]
    assert "db is a float, not a tensor" in out and "dc is not defined yet" in out
    assert out.strip().endswith("1/3 gradients match")


def test_approximate_uses_the_lectures_tolerance():
    t = torch.full((4,), 1.0)
    assert compare("x", t + 1e-7, t).approximate and not compare("x", t + 1e-3, t).approximate


def test_a_right_answers_row_reads_the_same_on_every_cpu():
    """Does a row within float32 rounding print a bound, not figures that change with the
    CPU's instruction set: the same text for a bit-exact answer and one off in the last bits?"""
    t = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    exact, rounded = str(compare("hpreact", t.clone(), t)), str(compare("hpreact", t + 4.7e-10 * t.sign(), t))
    assert exact == rounded == "hpreact         |    32x64 | approximate: True  | maxdiff: < 1e-6"


def test_a_wrong_answers_row_shows_its_figure():
    """Does a wrong answer still print approximate: False and its maxdiff (so nbval fails on it)?"""
    t = torch.ones(4)
    assert str(compare("x", t * 1.01, t)) == "x               |        4 | approximate: False | maxdiff: 1.0e-02"
    row = compare("x", t + 3e-6, t)  # close enough for allclose, more than rounding: the figure
    assert row.approximate and "maxdiff: 3.0e-06" in str(row)


def test_the_nbval_sanitizer_cannot_hide_a_wrong_answer():
    """Do the regexes nbval applies to the reference notebook leave every cmp verdict and
    figure untouched?"""
    import configparser
    import re
    from conftest import ROOT
    config = configparser.ConfigParser()
    config.read(ROOT / "notebooks" / "sanitize.cfg")
    rows = [str(compare("x", torch.ones(4) * 1.01, torch.ones(4))),
            str(compare("x", torch.ones(4), torch.ones(4))), "train 2.07  (the lecture: 2.0705)"]
    for section in config.sections():
        for row in rows:
            assert re.sub(config[section]["regex"], config[section]["replace"], row) == row, section
