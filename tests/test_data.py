"""Where names.txt is found, and what a learner is told when it is not. No test touches the
network or the real per-user cache: downloads are replaced by local bytes, the cache by a
temporary folder."""
import json
import os
import stat
import subprocess
import sys
import sysconfig
import urllib.error
from pathlib import Path

import platformdirs
import pytest
import torch

from autograder import data
from conftest import ROOT

GOOD = data.find_names().read_bytes()  # the session's verified copy ($BACKPROP_NINJA_NAMES in CI)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A learner's machine: no BACKPROP_NINJA_NAMES, an empty working folder and an empty
    per-user cache; every download is counted and served from local bytes."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    work, cache = tmp_path / "work", tmp_path / "cache" / "backprop-ninja"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(data, "DEFAULT_PATH", cache / "names.txt")
    downloads = []

    def download(timeout=30):
        downloads.append(1)
        return GOOD
    monkeypatch.setattr(data, "_download", download)
    return work, cache, downloads


_real_download = data._download


def offline(monkeypatch):
    """No network: the real download, failing as urlopen fails offline."""
    def fail(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(data, "_download", _real_download)
    monkeypatch.setattr(data.urllib.request, "urlopen", fail)


def test_the_environment_variable_comes_before_the_working_folder(world, tmp_path, monkeypatch):
    """With BACKPROP_NINJA_NAMES set and a names.txt in the working folder, is the variable's file used?"""
    work, cache, downloads = world
    mine = tmp_path / "elsewhere" / "my-names.txt"
    mine.parent.mkdir()
    mine.write_bytes(GOOD)
    (work / "names.txt").write_bytes(GOOD)
    monkeypatch.setenv(data.ENV_VAR, str(mine))
    assert data.find_names() == mine
    assert data.find_names(work / "names.txt") == work / "names.txt", "an explicit path comes first"
    assert not downloads and not cache.exists()


def test_a_names_txt_next_to_the_notebook_is_used_offline(world, monkeypatch):
    """A release notebook copied to another folder with names.txt beside it: is that file used,
    with no download and nothing written to the cache?"""
    work, cache, downloads = world
    (work / "names.txt").write_bytes(GOOD)
    offline(monkeypatch)
    assert data.find_names() == work / "names.txt"
    assert len(data.load_words()) == 32_033
    assert not cache.exists()


def test_otherwise_it_is_downloaded_once_into_the_user_cache(world):
    """With nothing local, is names.txt downloaded into the cache, readable, and found there the
    next time without another download?"""
    work, cache, downloads = world
    assert data.find_names() == cache / "names.txt"
    assert data.find_names() == cache / "names.txt"
    assert len(downloads) == 1
    assert (cache / "names.txt").read_bytes() == GOOD
    assert stat.S_IMODE((cache / "names.txt").stat().st_mode) == 0o644
    assert list(cache.iterdir()) == [cache / "names.txt"] and not any(work.iterdir())


def test_a_damaged_cached_copy_is_fetched_again(world):
    """Is a truncated file in the cache replaced by a fresh, verified download?"""
    work, cache, downloads = world
    cache.mkdir(parents=True)
    (cache / "names.txt").write_bytes(GOOD[:1000])
    assert data.find_names() == cache / "names.txt"
    assert (cache / "names.txt").read_bytes() == GOOD and len(downloads) == 1


def test_the_cache_is_platformdirs_per_user_folder_never_the_installed_package():
    """Is the cache platformdirs' user cache folder, outside the package and site-packages?"""
    assert data.DEFAULT_PATH == platformdirs.user_cache_path("backprop-ninja", appauthor=False) / "names.txt"
    package = Path(data.__file__).resolve().parent
    for folder in [package, package.parent, Path(sysconfig.get_paths()["purelib"])]:
        assert not data.DEFAULT_PATH.resolve().is_relative_to(folder), folder


def test_offline_with_nothing_found_says_what_to_do_from_a_notebook(world, monkeypatch):
    """Offline, no variable, no file: does the message name the notebook's folder and the %env
    line (not a command-line flag), and leave nothing behind?"""
    work, cache, downloads = world
    offline(monkeypatch)
    with pytest.raises(data.DataError) as e:
        data.splits()
    message = str(e.value)
    assert str(work) in message and f"%env {data.ENV_VAR}=" in message and data.URL in message
    assert "--local" not in message
    assert not cache.exists() and not any(work.iterdir())


@pytest.mark.parametrize("where", ["working-folder", "variable"])
@pytest.mark.parametrize("content", [b"emma\nolivia\n", None], ids=["wrong-file", "truncated"])
def test_a_bad_copy_is_refused_with_what_to_do(world, monkeypatch, where, content):
    """Is a wrong or truncated names.txt refused by its checksum, with advice for a notebook,
    rather than silently replaced by a download?"""
    work, cache, downloads = world
    bad = work / "names.txt"
    bad.write_bytes(content if content is not None else GOOD[:100_000])
    if where == "variable":
        monkeypatch.setenv(data.ENV_VAR, str(bad))
    with pytest.raises(data.DataError, match="not the course's names.txt.*fresh copy.*%env"):
        data.find_names()
    assert not downloads and not cache.exists()


def test_a_variable_naming_no_file_is_named(world, monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nope.txt"))
    with pytest.raises(data.DataError, match=f"nope.txt is what {data.ENV_VAR} names, but it is not a file.*%env"):
        data.find_names()


def test_a_truncated_download_is_refused_and_leaves_nothing(world, monkeypatch):
    """Is a download cut short refused by its checksum, leaving no file, not even a temporary one?"""
    work, cache, downloads = world
    monkeypatch.setattr(data, "_download", lambda timeout=30: GOOD[:5000])
    with pytest.raises(data.DataError, match="not the course's names.txt"):
        data.find_names()
    assert not (cache / "names.txt").exists()
    assert not list(cache.parent.rglob(".names-*"))


def test_the_command_copies_a_local_file_into_the_cache(world, tmp_path, capsys):
    """Does `python -m autograder.data --local PATH` keep a verified copy in the cache?"""
    work, cache, downloads = world
    local = tmp_path / "copy.txt"
    local.write_bytes(GOOD)
    data.main(["--local", str(local), "--dest", str(cache / "names.txt")])
    assert (cache / "names.txt").read_bytes() == GOOD and not downloads
    assert "32,033 names, SHA-256 verified" in capsys.readouterr().out


def test_the_command_offline_names_its_flag(world, monkeypatch):
    """From a shell, does the error also say how to give a local copy on the command line?"""
    offline(monkeypatch)
    with pytest.raises(SystemExit) as e:
        data.main([])
    assert "python -m autograder.data --local" in str(e.value)


def _setup_cells(notebook):
    cells = json.loads((ROOT / "release" / "backprop_ninja" / notebook).read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c.get("id") in ("setup_imports", "setup_data"))


@pytest.mark.parametrize("with_names", [True, False], ids=["names-beside-it", "nothing-offline"])
def test_a_release_notebooks_setup_in_another_folder(tmp_path, with_names):
    """The setup cells of a release notebook, run offline in a fresh folder with an empty home:
    do they load the data from a names.txt beside the notebook, and without one, end in a
    message that says what to do from a notebook?"""
    if with_names:
        (tmp_path / "names.txt").write_bytes(GOOD)
    offline_prelude = ("import urllib.request, urllib.error\n"
                       "def _offline(*a, **k): raise urllib.error.URLError('no network')\n"
                       "urllib.request.urlopen = _offline\n")
    env = {k: v for k, v in os.environ.items() if k not in (data.ENV_VAR, "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path), MPLBACKEND="Agg", MPLCONFIGDIR=str(tmp_path / ".mpl"))
    run = subprocess.run([sys.executable, "-c", offline_prelude + _setup_cells("ex2_cross_entropy.ipynb")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if with_names:
        assert run.returncode == 0, run.stderr
        assert "train (182625, 3)" in run.stdout
    else:
        assert run.returncode != 0
        assert "DataError" in run.stderr and "%env BACKPROP_NINJA_NAMES=" in run.stderr
        assert str(tmp_path) in run.stderr and "--local" not in run.stderr
    assert not (tmp_path / ".cache" / "backprop-ninja").exists(), "nothing downloaded, nothing cached"


def test_the_lecture_splits():
    """Are the words and splits the lecture's: 32,033 names, 182,625 / 22,655 / 22,866 examples?"""
    words = data.load_words()
    assert len(words) == 32_033 and words[:3] == ["emma", "olivia", "ava"]
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = data.splits(words)
    assert [len(Xtr), len(Xdev), len(Xte)] == [182_625, 22_655, 22_866]
    assert Xtr.shape[1] == 3 and data.itos[0] == "." and data.stoi["z"] == 26
    # the first name in the shuffled training set starts with three '.' of context
    assert Xtr[0].tolist() == [0, 0, 0]


def lecture_build_dataset(words, block_size):
    """The lecture's own loop, kept here as the definition build_dataset must reproduce."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = data.stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X, dtype=torch.int64).reshape(-1, block_size), torch.tensor(Y, dtype=torch.int64)


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_build_dataset_is_the_lectures_loop(block_size):
    """Does the gathered build_dataset give exactly the lecture loop's contexts and targets, for
    every name, at any context length, and for no names or a name of one letter?"""
    words = data.load_words()
    for ws in (words, [], ["a"], ["zz", "ab"]):
        X, Y = data.build_dataset(ws, block_size)
        x, y = lecture_build_dataset(ws, block_size)
        assert X.dtype == Y.dtype == torch.int64 and X.shape == x.shape and torch.equal(X, x) and torch.equal(Y, y)
