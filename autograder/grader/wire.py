"""The messages between the grader and its sandboxed child: an 8-byte length, then a
torch.save payload, read back with weights_only=True (plain data and tensors only).

Both sides use it; the grader passes a deadline (time.monotonic) and a size limit, so that
a child that stalls or floods cannot hold it up. Whatever cannot be decoded, or decodes to
anything but plain data (dicts with string keys, lists, tuples, strings, numbers, None) and
plain dense tensors on the CPU, is a WireError: the reader never sees it."""
import io
import os
import select
import signal
import struct
import time


class WireError(ValueError):
    """A message that is not one: cut short, too big, undecodable or not plain data."""


PLAIN = (str, int, float, bool, type(None))


def plain(value, depth=0):
    """value if it is plain data (see the module's docstring), else WireError."""
    import torch  # in each function, not at the top: the class runner imports none of torch
    if type(value) in PLAIN:
        return value
    if type(value) is torch.Tensor:
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_nested \
                or value.is_quantized or value.requires_grad or value.is_complex():
            raise WireError("a tensor that is not dense, real and on the CPU")
        return value
    if depth > 8:
        raise WireError("a message nested too deep")
    if type(value) in (list, tuple):
        for v in value:
            plain(v, depth + 1)
        return value
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise WireError("a message with a key that is not a string")
            plain(v, depth + 1)
        return value
    raise WireError(f"a message holding a {type(value).__name__}")


def send(fd, message, deadline=None):
    import torch
    buf = io.BytesIO()
    torch.save(message, buf)
    data = memoryview(struct.pack(">Q", buf.getbuffer().nbytes) + buf.getvalue())
    while data:
        _wait(fd, deadline, write=True)
        data = data[os.write(fd, data):]


def receive(fd, deadline=None, limit=None):
    """One message (a dict) from fd, or None at end of file."""
    import torch
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
    try:
        message = torch.load(io.BytesIO(body), weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, anything the decoder raises
        raise WireError(f"a message that cannot be decoded ({type(e).__name__})") from None
    if type(message) is not dict:
        raise WireError("a message that is not a dict")
    return plain(message)


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
