"""names.txt: find it (verified), load the words, build the lecture's splits.

Where names.txt is looked for, in this order (the first one found is used):
1. a path given explicitly (`load_words(path)`), or the environment variable
   BACKPROP_NINJA_NAMES;
2. `names.txt` in the working folder (a notebook's own folder);
3. the per-user cache folder (`CACHE_DIR`, chosen by platformdirs: ~/.cache/backprop-ninja on
   Linux), where it is downloaded from its public URL the first time.
Every file is checked against its SHA-256 before use; nothing is ever written next to the
installed package.

    python -m autograder.data              # find it, or download it into the cache
    python -m autograder.data --local PATH # copy a local file into the cache (verified)
"""
import argparse
import hashlib
import os
import random
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import platformdirs

URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
SIZE = 228_145  # bytes
ENV_VAR = "BACKPROP_NINJA_NAMES"  # a names.txt to use, wherever it is
FILE_NAME = "names.txt"
CACHE_DIR = platformdirs.user_cache_path("backprop-ninja", appauthor=False)
DEFAULT_PATH = CACHE_DIR / FILE_NAME  # the per-user copy; the grading sandbox reads this one
BLOCK_SIZE = 3  # characters of context

# What to do about a missing or wrong file, from a notebook (where the error is usually seen).
FROM_A_NOTEBOOK = (
    f"To fix it from a notebook: download names.txt from {URL} and put it in this notebook's "
    f"folder ({{cwd}}), or point a cell above the data cell at your copy with "
    f"`%env {ENV_VAR}=/path/to/names.txt`; then run the data cell again.")


class DataError(RuntimeError):
    """names.txt could not be found or obtained; the message says what to do."""


def _advice():
    return FROM_A_NOTEBOOK.format(cwd=Path.cwd())


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write_atomically(data, dest):
    """Write bytes to dest via a temporary file in the same folder, so no partial file is left."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".names-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a public data set from the grader's sandbox
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def _verify(data, origin):
    if _sha256(data) != SHA256:
        raise DataError(
            f"{origin} is not the course's names.txt ({len(data):,} bytes; expected {SIZE:,} "
            f"bytes with SHA-256 {SHA256}): it is truncated or a different file. "
            f"Replace it with a fresh copy. " + _advice())
    return data


def _download(timeout=30):
    try:
        with urllib.request.urlopen(URL, timeout=timeout) as r:
            return r.read()
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"names.txt is not in {Path.cwd()} and could not be downloaded from "
                        f"{URL} ({e}). " + _advice()) from None


def _explicit(path):
    """The verified explicit path (an argument, else $BACKPROP_NINJA_NAMES), or None."""
    given = path or os.environ.get(ENV_VAR)
    if not given:
        return None
    given = Path(given).expanduser()
    if not given.is_file():
        how = "was asked for" if path else f"is what {ENV_VAR} names"
        raise DataError(f"{given} {how}, but it is not a file. " + _advice())
    _verify(given.read_bytes(), given)
    return given


def find_names(path=None):
    """The path of a verified names.txt: `path` or $BACKPROP_NINJA_NAMES, else names.txt in the
    working folder, else the per-user cache (downloaded there the first time)."""
    explicit = _explicit(path)
    if explicit:
        return explicit
    here = Path.cwd() / FILE_NAME
    if here.is_file():
        _verify(here.read_bytes(), here)
        return here
    if DEFAULT_PATH.is_file() and _sha256(DEFAULT_PATH.read_bytes()) == SHA256:
        return DEFAULT_PATH
    _write_atomically(_verify(_download(), URL), DEFAULT_PATH)
    return DEFAULT_PATH


def ensure_names(local=None, dest=None):
    """Put a verified names.txt at dest (default: the per-user cache) and return dest: a copy of
    `local`, or of what find_names finds (downloading if needed)."""
    dest = Path(dest) if dest else DEFAULT_PATH
    source = _explicit(local)
    if source is None and dest.is_file() and _sha256(dest.read_bytes()) == SHA256:
        return dest
    source = source or find_names()
    if source.resolve() != dest.resolve():
        _write_atomically(source.read_bytes(), dest)  # verified already
    return dest


def load_words(path=None):
    """The 32,033 names, in file order."""
    return find_names(path).read_text().splitlines()


# Vocabulary: '.' is 0 (start and end of a name), then a..z are 1..26.
itos = ["."] + [chr(ord("a") + i) for i in range(26)]
stoi = {s: i for i, s in enumerate(itos)}
vocab_size = len(itos)


def build_dataset(words, block_size=BLOCK_SIZE):
    """X (N, block_size) int64 contexts and Y (N,) int64 next characters: for each character of
    each name and its closing '.', the block_size characters before it ('.'-padded), as the
    lecture's loop builds them, here gathered at once from the names laid end to end."""
    import torch  # here, not at the top: the class runner finds names.txt without torch
    seq, targets = [], []  # each name as [0] * block_size + its characters + [0]
    for w in words:
        start = len(seq) + block_size
        seq += [0] * block_size
        seq += [stoi[ch] for ch in w] + [0]
        targets.append(range(start, len(seq)))
    seq = torch.tensor(seq, dtype=torch.int64)
    at = torch.tensor([i for r in targets for i in r], dtype=torch.int64)
    X = seq[at.unsqueeze(1) + torch.arange(-block_size, 0)]
    return X.reshape(-1, block_size), seq[at]


def splits(words=None, block_size=BLOCK_SIZE):
    """(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte): the lecture's shuffled 80/10/10 split."""
    words = list(words if words is not None else load_words())
    random.Random(42).shuffle(words)  # same permutation as random.seed(42); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return (build_dataset(words[:n1], block_size),
            build_dataset(words[n1:n2], block_size),
            build_dataset(words[n2:], block_size))


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m autograder.data",
        description="Find names.txt (as the notebooks do) and keep a verified copy in the "
                    f"per-user cache, {DEFAULT_PATH}, where the grading sandbox reads it.")
    p.add_argument("--local", metavar="PATH",
                   help=f"copy this file instead of downloading (or set {ENV_VAR}=PATH)")
    p.add_argument("--dest", default=DEFAULT_PATH, help="where to keep the copy (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        path = ensure_names(args.local, args.dest)
    except DataError as e:
        sys.exit(f"error: {e}\nFrom a shell: python -m autograder.data --local /path/to/names.txt")
    print(f"{path}: {len(load_words(path)):,} names, SHA-256 verified")


if __name__ == "__main__":
    main()
