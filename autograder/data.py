"""names.txt: obtain it (verified), load the words, build the lecture's splits.

One module obtains the file, so notebooks and the grader build identical tensors:
    python -m autograder.data              # download, or use $BACKPROP_NINJA_NAMES
    python -m autograder.data --local PATH # copy a local file (verified)
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

import torch

URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
ENV_VAR = "BACKPROP_NINJA_NAMES"  # a local copy of names.txt to use instead of downloading
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "names.txt"
BLOCK_SIZE = 3  # characters of context


class DataError(RuntimeError):
    """names.txt could not be obtained; the message says what to do."""


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write_atomically(data, dest):
    """Write bytes to dest via a temporary file in the same folder, so no partial file is left."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".names-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def _verify(data, origin):
    if _sha256(data) != SHA256:
        raise DataError(
            f"names.txt from {origin} has the wrong SHA-256 ({len(data):,} bytes; "
            f"expected 228,145 bytes with SHA-256 {SHA256}). It is truncated or a different "
            f"file: delete it and fetch it again from {URL}.")
    return data


def _download(timeout=30):
    try:
        with urllib.request.urlopen(URL, timeout=timeout) as r:
            return r.read()
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"could not download names.txt from {URL} ({e}). Without network, point "
            f"{ENV_VAR}=/path/to/names.txt (or --local PATH) at a copy of the file.") from None


def ensure_names(local=None, dest=DEFAULT_PATH):
    """Return the path of a verified names.txt, copying it from `local` or downloading it."""
    dest = Path(dest)
    local = local or os.environ.get(ENV_VAR)
    if dest.exists() and _sha256(dest.read_bytes()) == SHA256:
        return dest
    if local:
        local = Path(local)
        if not local.is_file():
            raise DataError(f"{ENV_VAR} or --local names {local}, which is not a file.")
        data = _verify(local.read_bytes(), local)
    else:
        data = _verify(_download(), URL)
    _write_atomically(data, dest)
    return dest


def load_words(path=None):
    """The 32,033 names, in file order."""
    path = Path(path) if path else ensure_names()
    return path.read_text().splitlines()


# Vocabulary: '.' is 0 (start and end of a name), then a..z are 1..26.
itos = ["."] + [chr(ord("a") + i) for i in range(26)]
stoi = {s: i for i, s in enumerate(itos)}
vocab_size = len(itos)


def build_dataset(words, block_size=BLOCK_SIZE):
    """X (N, block_size) int64 contexts and Y (N,) int64 next characters."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def splits(words=None, block_size=BLOCK_SIZE):
    """(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte): the lecture's shuffled 80/10/10 split."""
    words = list(words if words is not None else load_words())
    random.Random(42).shuffle(words)  # same permutation as random.seed(42); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return (build_dataset(words[:n1], block_size),
            build_dataset(words[n1:n2], block_size),
            build_dataset(words[n2:], block_size))


def main(argv=None):
    p = argparse.ArgumentParser(description="Fetch and verify names.txt.")
    p.add_argument("--local", help=f"copy this file instead of downloading (or set {ENV_VAR})")
    p.add_argument("--dest", default=DEFAULT_PATH, help="where to write it (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        path = ensure_names(args.local, args.dest)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(f"{path}: {len(load_words(path)):,} names, SHA-256 verified")


if __name__ == "__main__":
    main()
