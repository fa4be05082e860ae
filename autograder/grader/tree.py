"""Walk, copy and remove a folder a learner controls, whatever it holds.

A learner decides everything in their submission's folder and in the working folder their
kernel writes to: a folder thousands of levels deep (its path longer than PATH_MAX), a sparse
file of gigabytes, FIFOs, sockets, devices, links, names that are not UTF-8, folders with no
rights. Python's own walks (os.walk, shutil.rmtree and copytree, Path.rglob) recurse, and
raise RecursionError, which is no OSError, on a deep tree; a long path raises ENAMETOOLONG.
Here every walk is iterative (an explicit stack) and fd-relative (each name is opened in the
folder above it, never by its whole path), never follows a link, never opens anything but a
regular file or a folder, and is bounded (BOUNDS): what lies beyond a bound is left out and
said so. remove() has no bound: it always completes, giving folders their rights back as it
goes. This module imports nothing of the course: nbgrader's configuration and the sandboxed
servers use it too.
"""
import fnmatch
import os
import stat
from collections import namedtuple

# What of a learner's folder is read, copied or hashed, in one place.
Bounds = namedtuple("Bounds", "depth path entries bytes file_bytes")
BOUNDS = Bounds(depth=16,  # folders below the top one
                path=1024,  # bytes of a path below the top one
                entries=1000,  # files, folders, links and special files, in all
                bytes=256 * 2**20,  # bytes of the regular files read, in all
                file_bytes=64 * 2**20)  # bytes of one regular file

# What walk() yields: Entry(rel, kind, data); rel is the path below the top (a str, undecodable
# bytes kept as surrogates, os.fsdecode's way).
FILE, FOLDER, LINK, SPECIAL, SKIPPED = "file", "folder", "link", "special", "skipped"
Entry = namedtuple("Entry", "rel kind data")  # data: FILE its bytes, LINK its target (bytes),
#                                               SPECIAL its kind, SKIPPED why it was left out

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def shown(rel, limit=200):
    """A path as a note may show it: undecodable bytes as U+FFFD, at most `limit` characters."""
    text = os.fsencode(rel).decode("utf-8", "replace") if isinstance(rel, str) else rel.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit // 2] + "..." + text[-limit // 2:]


def too_big(st, cap):
    """Why a regular file of stat st is over cap bytes by its size or by its blocks on disk, or ''."""
    if st.st_size > cap or st.st_blocks * 512 > max(cap, 2**20):  # blocks: rounded up, by 1 MiB at most
        return f"is larger than {cap} bytes"
    return ""


def read_fd(fd, cap):
    """(bytes, '') of the open regular file fd, at most cap bytes, or (None, why not): checked by its
    real size before reading, and never more than cap + 1 bytes read."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file"
    why = too_big(st, cap)
    if why:
        return None, why
    chunks, size = [], 0
    while size <= cap:
        chunk = os.read(fd, min(2**20, cap + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > cap:
        return None, f"is larger than {cap} bytes"
    return b"".join(chunks), ""


def read_regular(path, cap, dir_fd=None):
    """(bytes, '') of the regular file at path (a name in dir_fd, if given), at most cap bytes, or
    (None, why not); never follows a link, never blocks on a FIFO or a device."""
    try:
        fd = os.open(path, _READ, dir_fd=dir_fd)
    except OSError as e:
        try:
            is_link = stat.S_ISLNK(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        return None, "is a symbolic link" if is_link else f"could not be opened ({type(e).__name__})"
    try:
        return read_fd(fd, cap)
    finally:
        os.close(fd)


def walk(top, bounds=BOUNDS, ignore=(), read=True):
    """Yield an Entry for everything under the folder top, depth first, names sorted: each
    regular file with its bytes (read=False: None), each link with its target, never followed;
    each special file, each folder; and a SKIPPED entry, with why, for what is beyond a bound
    or cannot be opened. Names matching a pattern of `ignore` are passed over, as if not there.
    A top that is not a folder (or a link to one) yields nothing."""
    try:
        fd = os.open(top, _DIR)
    except OSError:
        return
    stack = [(fd, "", iter(_names(fd, bounds.entries + 1)))]
    count = size = 0
    try:
        while stack:
            fd, rel_dir, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            if any(fnmatch.fnmatch(name, p) for p in ignore):
                continue
            rel = os.path.join(rel_dir, name)
            count += 1
            if count > bounds.entries:
                yield Entry(rel, SKIPPED, f"is beyond the first {bounds.entries} files and folders of the submission")
                return
            if len(os.fsencode(rel)) > bounds.path:
                yield Entry(rel, SKIPPED, f"has a path longer than {bounds.path} bytes")
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as e:
                yield Entry(rel, SKIPPED, f"could not be read ({type(e).__name__})")
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    yield Entry(rel, LINK, os.readlink(os.fsencode(name), dir_fd=fd))
                except OSError:
                    yield Entry(rel, LINK, b"")
            elif stat.S_ISDIR(st.st_mode):
                if len(stack) > bounds.depth:
                    yield Entry(rel, SKIPPED, f"is more than {bounds.depth} folders deep")
                    continue
                try:
                    sub = os.open(name, _DIR, dir_fd=fd)
                except OSError as e:
                    yield Entry(rel, SKIPPED, f"could not be opened ({type(e).__name__})")
                    continue
                stack.append((sub, rel, iter(_names(sub, bounds.entries + 1 - count))))
                yield Entry(rel, FOLDER, None)
            elif not stat.S_ISREG(st.st_mode):
                yield Entry(rel, SPECIAL, _KINDS.get(stat.S_IFMT(st.st_mode), "a special file"))
            elif not read:
                yield Entry(rel, FILE, None)
            else:
                cap = min(bounds.file_bytes, bounds.bytes - size)
                content, why = read_regular(name, cap, dir_fd=fd)
                if content is None and why.startswith("is larger") and cap < bounds.file_bytes:
                    why = f"would take the submission's files past {bounds.bytes} bytes"
                if why == "is not a regular file":  # swapped since its stat
                    yield Entry(rel, SPECIAL, "a special file")
                elif content is None:
                    yield Entry(rel, SKIPPED, why)
                else:
                    size += len(content)
                    yield Entry(rel, FILE, content)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _names(fd, most):
    """The sorted names in the open folder fd, at most `most` of them (a folder of millions is
    not read whole: the walk stops at its bound anyway)."""
    names = []
    with os.scandir(fd) as it:
        for entry in it:
            names.append(entry.name)
            if len(names) >= most:
                break
    return sorted(names)


def why_left_out(kind, data):
    """Why an entry of that kind is not used as a file: '' for a regular file or a folder."""
    if kind == LINK:
        return "is a symbolic link"
    if kind == SPECIAL:
        return f"is {data}, not a regular file"
    return data if kind == SKIPPED else ""


def copy(src, dest, bounds=BOUNDS, owner=None):
    """Copy the regular files and folders of src into the folder dest (made if missing), as
    walk() reads them; [(relative path, why)] of what was left out (links, special files,
    what is beyond a bound). owner: a user id that then owns every copy (as root only)."""
    left = []
    os.makedirs(dest, exist_ok=True)
    _own(dest, owner)
    for rel, kind, data in walk(src, bounds):
        path = os.path.join(dest, rel)
        if kind == FOLDER:
            os.mkdir(path)
            os.chmod(path, 0o755)  # enterable by the sandbox's root, who has no capabilities
        elif kind == FILE:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with open(fd, "wb") as f:
                f.write(data)
        else:
            left.append((rel, why_left_out(kind, data)))
            continue
        _own(path, owner)
    return left


def _own(path, owner):
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, owner, follow_symlinks=False)


def remove(path):
    """Remove path and everything under it, however deep, whatever rights its folders have (they
    are given back on the way down: this process owns them, or is root); a link is removed, never
    followed. True if path is gone. Never raises."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        pfd = os.open(parent or "/", _DIR)
    except OSError:
        return not os.path.lexists(path)
    try:
        _remove_in(pfd, name)
        os.stat(name, dir_fd=pfd, follow_symlinks=False)
        return False
    except FileNotFoundError:
        return True
    except OSError:
        return False
    finally:
        os.close(pfd)


def _remove_in(pfd, name):
    """Remove `name` in the open folder pfd, iteratively: at each folder its other entries are
    unlinked and its folders noted; then the next noted folder is entered (opened by its name
    in this one), or, when none is left, this one is left through `..` (checked to be the
    folder it was entered from) and removed. At most two folders are open at a time."""
    try:
        os.unlink(name, dir_fd=pfd)
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        pass  # a folder (or what this user may not unlink: rmdir will say)
    fd = _open_folder(pfd, name)
    ids, names = [_id(pfd)], [name]
    try:
        pending = [_clear(fd)]
        while True:
            if pending[-1]:
                sub = pending[-1].pop()
                try:
                    child = _open_folder(fd, sub)
                except OSError:
                    continue  # gone meanwhile, or not this user's: left, and remove() says so
                ids.append(_id(fd))
                names.append(sub)
                fd, old = child, fd
                os.close(old)
                pending.append(_clear(fd))
                continue
            if len(names) == 1:
                break
            fd, old = os.open("..", _DIR, dir_fd=fd), fd
            os.close(old)
            if _id(fd) != ids[-1]:  # moved meanwhile: nothing is removed but below the top
                raise OSError("a folder was moved during its removal")
            try:
                os.rmdir(names[-1], dir_fd=fd)
            except OSError:
                pass  # not empty: left, and remove() says so
            ids.pop()
            names.pop()
            pending.pop()
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def _id(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _open_folder(pfd, name):
    """The folder `name` in pfd, opened (never through a link) with its rights given back."""
    try:
        fd = os.open(name, _DIR, dir_fd=pfd)
    except PermissionError:  # no read right: given back through a handle that needs none
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        fd = os.open(name, _DIR, dir_fd=pfd)
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
    except OSError:
        pass
    return fd


def _clear(fd):
    """Unlink everything in the open folder fd but its folders; their names."""
    folders = []
    with os.scandir(fd) as it:
        for entry in it:
            try:
                os.unlink(entry.name, dir_fd=fd)
            except IsADirectoryError:
                folders.append(entry.name)
            except OSError:
                pass
    return folders
