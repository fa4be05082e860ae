import torch

from autograder.compare import compare, report


def test_a_broadcastable_wrong_shape_is_not_exact():
    """Is a (32, 1) gradient for a (32, 27) tensor reported as the wrong shape, although
    broadcasting would make the lecture's cmp say exact: True?"""
    t = torch.ones(32, 27)
    row = compare("x", torch.ones(32, 1), t)
    assert not row.exact and not row.approximate and "wrong shape" in str(row)


def test_size_one_dimensions_are_accepted_with_a_note():
    """Is the lecture's dbnmeani of shape (64,) accepted for a (1, 64) tensor, with a note?"""
    t = torch.randn(1, 64)
    row = compare("bnmeani", t.view(64), t)
    assert row.exact and row.approximate and row.note == "(64,) ok for (1, 64)"


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
