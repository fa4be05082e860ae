import urllib.error
from pathlib import Path

import pytest

from autograder import data


def test_a_local_copy_is_verified_and_written(tmp_path):
    """Is a local names.txt copied to the destination after its checksum is verified?"""
    dest = tmp_path / "names.txt"
    data.ensure_names(local=data.ensure_names(), dest=dest)
    assert dest.read_bytes() == data.ensure_names().read_bytes()
    assert list(tmp_path.iterdir()) == [dest]


@pytest.mark.parametrize("content", [b"emma\nolivia\n", None], ids=["wrong-file", "truncated"])
def test_a_bad_copy_is_refused_and_leaves_nothing(tmp_path, content):
    """Does a wrong or truncated file give one clear message and leave no partial file behind?"""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content if content is not None else data.ensure_names().read_bytes()[:100_000])
    dest = tmp_path / "out" / "names.txt"
    with pytest.raises(data.DataError, match="wrong SHA-256.*fetch it again"):
        data.ensure_names(local=bad, dest=dest)
    assert not dest.exists()
    assert not list(tmp_path.rglob(".names-*")), "no temporary file left behind"


def test_no_network_and_no_copy_says_what_to_do(tmp_path, monkeypatch):
    """Without network and without a local copy, is the message about BACKPROP_NINJA_NAMES?"""
    monkeypatch.delenv(data.ENV_VAR, raising=False)

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError, match="BACKPROP_NINJA_NAMES"):
        data.ensure_names(dest=tmp_path / "names.txt")
    assert not any(tmp_path.iterdir())


def test_a_truncated_download_is_refused(tmp_path, monkeypatch):
    """Is a download cut short refused by its checksum, leaving no file?"""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "_download", lambda: data.ensure_names().read_bytes()[:5000])
    with pytest.raises(data.DataError, match="wrong SHA-256"):
        data.ensure_names(dest=tmp_path / "names.txt")
    assert not any(tmp_path.iterdir())


def test_a_missing_local_path_is_named(tmp_path):
    with pytest.raises(data.DataError, match="not a file"):
        data.ensure_names(local=tmp_path / "nope.txt", dest=tmp_path / "names.txt")


def test_the_lecture_splits():
    """Are the words and splits the lecture's: 32,033 names, 182,625 / 22,655 / 22,866 examples?"""
    words = data.load_words()
    assert len(words) == 32_033 and words[:3] == ["emma", "olivia", "ava"]
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = data.splits(words)
    assert [len(Xtr), len(Xdev), len(Xte)] == [182_625, 22_655, 22_866]
    assert Xtr.shape[1] == 3 and data.itos[0] == "." and data.stoi["z"] == 26
    # the first name in the shuffled training set starts with three '.' of context
    assert Xtr[0].tolist() == [0, 0, 0]
