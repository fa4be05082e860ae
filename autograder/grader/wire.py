"""The messages between the grader and its sandboxed child: an 8-byte length, then the
message: a JSON header and the raw bytes of the tensors it holds (encode, decode). Decoding
runs no code of the sender's: JSON, then each tensor copied from its bytes, its dtype, shape
and size checked. An answer's round trip through a pipe takes about 35 us (480 us through
torch.save and torch.load).

Both sides use it; the grader passes a deadline (time.monotonic) and a size limit, so that
a child that stalls or floods cannot hold it up. Whatever cannot be decoded, or decodes to
anything but plain data (dicts with string keys, lists, tuples, strings, numbers, None) and
plain dense tensors on the CPU, is a WireError: the reader never sees it."""
import functools
import json
import math
import os
import select
import signal
import struct
import time


class WireError(ValueError):
    """A message that is not one: cut short, too big, undecodable or not plain data."""


PLAIN = (str, int, float, bool, type(None))
DEPTH = 8        # containers inside containers, at most
ALIGN = 8        # each tensor's bytes start at a multiple of this in the message's data
MAX_DIMS = 64


@functools.lru_cache(maxsize=1)
def _dtypes():
    """{name: (dtype, bytes per element)} of the tensors a message may hold: every real dtype
    of torch whose elements are whole bytes (no complex, no quantized one)."""
    import torch
    found = {}
    for d in vars(torch).values():
        if isinstance(d, torch.dtype) and not d.is_complex and not str(d).startswith("torch.q"):
            try:
                found[str(d)] = (d, torch.empty((), dtype=d).element_size())
            except Exception:  # a dtype of sub-byte elements, or one this build cannot make
                pass
    return found


def encode(message):
    """The bytes of a message: a 4-byte length, a JSON header (the message with each tensor
    replaced by its number, and each tensor's dtype, shape and size), then each tensor's
    bytes. WireError for anything but plain data (see the module's docstring)."""
    tensors, chunks = [], []

    def tree(value, depth):
        if type(value) in PLAIN:
            return value
        if depth > DEPTH:
            raise WireError("a message nested too deep")
        if type(value) in (list, tuple):
            return {"l" if type(value) is list else "t": [tree(v, depth + 1) for v in value]}
        if type(value) is dict:
            if any(type(k) is not str for k in value):
                raise WireError("a message with a key that is not a string")
            return {"d": {k: tree(v, depth + 1) for k, v in value.items()}}
        import torch
        if type(value) is torch.Tensor:
            if value.layout != torch.strided or value.device.type != "cpu" or value.is_nested \
                    or value.is_quantized or value.requires_grad or str(value.dtype) not in _dtypes():
                raise WireError("a tensor that is not dense, real and on the CPU")
            data = value.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            tensors.append([str(value.dtype), list(value.shape), len(data)])
            chunks.append(data + bytes(-len(data) % ALIGN))
            return {"x": len(tensors) - 1}
        raise WireError(f"a message holding a {type(value).__name__}")
    header = json.dumps({"v": tree(message, 0), "x": tensors}, separators=(",", ":")).encode()
    return b"".join([struct.pack(">I", len(header)), header, *chunks])


def decode(body):
    """The message encode made of `body`, or WireError: whatever else the bytes say (a
    sender may lie), what comes out is plain data, each tensor a fresh copy."""
    if len(body) < 4:
        raise WireError("a message cut short")
    (size,) = struct.unpack(">I", body[:4])
    if size > len(body) - 4:
        raise WireError("a message cut short")
    try:
        header = json.loads(bytes(body[4:4 + size]))
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, too deep for the parser
        raise WireError(f"a message that cannot be decoded ({type(e).__name__})") from None
    if type(header) is not dict or set(header) != {"v", "x"} or type(header["x"]) is not list:
        raise WireError("a message that cannot be decoded (its header)")
    data, at, tensors = memoryview(body)[4 + size:], 0, []
    for spec in header["x"]:
        if type(spec) is not list or len(spec) != 3:
            raise WireError("a tensor that cannot be decoded")
        name, shape, n = spec
        dtype, itemsize = _dtypes().get(name, (None, 0)) if type(name) is str else (None, 0)
        if dtype is None or type(shape) is not list or len(shape) > MAX_DIMS or type(n) is not int \
                or any(type(d) is not int or not 0 <= d < 2**62 for d in shape) or not 0 <= n <= len(data) - at:
            raise WireError("a tensor that cannot be decoded")
        if math.prod(shape) * itemsize != n:
            raise WireError("a tensor whose size is not its shape's")
        import torch
        try:
            raw = torch.frombuffer(bytearray(data[at:at + n]), dtype=torch.uint8) if n else torch.empty(0, dtype=torch.uint8)
            tensors.append(raw.reshape(shape) != 0 if dtype == torch.bool else raw.view(dtype).reshape(shape))
        except (RuntimeError, ValueError, OverflowError) as e:  # a shape torch cannot make
            raise WireError(f"a tensor that cannot be decoded ({type(e).__name__})") from None
        at += n + (-n % ALIGN)
    if at != len(data):
        raise WireError("a message whose data is not its header's")

    def build(node, depth):
        if type(node) in PLAIN:
            return node
        if type(node) is dict and len(node) == 1 and depth <= DEPTH:
            (tag, inner), = node.items()
            if tag in ("l", "t") and type(inner) is list:
                items = [build(v, depth + 1) for v in inner]
                return items if tag == "l" else tuple(items)
            if tag == "d" and type(inner) is dict:
                return {k: build(v, depth + 1) for k, v in inner.items()}
            if tag == "x" and type(inner) is int and 0 <= inner < len(tensors):
                return tensors[inner]
        raise WireError("a message nested too deep" if depth > DEPTH else "a message that is not plain data")
    return build(header["v"], 0)


def send(fd, message, deadline=None):
    """Write one message (plain data: see encode) to fd, within the deadline."""
    body = encode(message)
    data = memoryview(struct.pack(">Q", len(body)) + body)
    while data:
        _wait(fd, deadline, write=True)
        data = data[os.write(fd, data):]


def receive(fd, deadline=None, limit=None):
    """One message (a dict) from fd, or None at end of file."""
    head = _read(fd, 8, deadline)
    if not head:
        return None
    if len(head) < 8:
        raise WireError("a message cut short")
    (size,) = struct.unpack(">Q", head)
    if limit is not None and size > limit:
        raise WireError(f"a message of {size} bytes")
    body = _read(fd, size, deadline)
    if len(body) < size:
        raise WireError("a message cut short")
    message = decode(body)
    if type(message) is not dict:
        raise WireError("a message that is not a dict")
    return message


def _wait(fd, deadline, write=False):
    """Until fd can be read (or written), or TimeoutError once the deadline has passed."""
    if deadline is None:
        return
    ready = select.select([] if write else [fd], [fd] if write else [], [], max(0.0, deadline - time.monotonic()))
    if not any(ready):
        raise TimeoutError


def _read(fd, size, deadline):
    chunks, got = [], 0
    while got < size:
        _wait(fd, deadline)
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def stopped_by(sig):
    """How a process killed by signal `sig` ended, in the words a learner reads."""
    return {signal.SIGXCPU: "used more than its CPU time", signal.SIGKILL: "was killed (memory or time)",
            signal.SIGSEGV: "crashed"}.get(sig, f"was stopped by signal {sig}")


def ended(status):
    """How a process ended, from its wait status (os.waitpid's), in the same words; a status
    that is no wait status (from a process that may lie) says so."""
    if not isinstance(status, int) or not 0 <= status < 2**16:
        return "ended unexpectedly"
    return stopped_by(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else f"exited with code {os.WEXITSTATUS(status)}"
