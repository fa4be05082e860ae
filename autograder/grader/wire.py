"""The messages between the grader and its sandboxed child: an 8-byte length, then a
torch.save payload, read back with weights_only=True (plain data and tensors only).

Both sides use it; the grader passes a deadline (time.monotonic) and a size limit, so that
a child that stalls or floods cannot hold it up."""
import io
import os
import select
import struct
import time

import torch


def send(fd, message, deadline=None):
    buf = io.BytesIO()
    torch.save(message, buf)
    data = memoryview(struct.pack(">Q", buf.getbuffer().nbytes) + buf.getvalue())
    while data:
        _wait(fd, deadline, write=True)
        data = data[os.write(fd, data):]


def receive(fd, deadline=None, limit=None):
    """One message (a dict) from fd, or None at end of file."""
    head = _read(fd, 8, deadline)
    if not head:
        return None
    (size,) = struct.unpack(">Q", head)
    if limit is not None and size > limit:
        raise ValueError(f"a message of {size} bytes")
    body = _read(fd, size, deadline)
    if len(body) < size:
        raise EOFError("a message cut short")
    message = torch.load(io.BytesIO(body), weights_only=True)
    if not isinstance(message, dict):
        raise ValueError("a message that is not a dict")
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
