"""Writing files so that a crash, a power cut or a second process never leaves one
half-written: the one home for atomic replace, fsync and file locks. Everything that
must survive (settings, configs, status, checkpoints, grades, exports, downloads)
goes through here; nothing else in the package calls os.fsync or flock.

Stdlib only, imported by every layer (settings, data, model, train, grade, runs)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Iterator


class ShortWrite(OSError):
    """The disk took only part of what was written (a full disk, a quota)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


# A full disk and an exhausted quota read the same to the user: free space.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException | None) -> OSError | None:
    """The OSError saying the disk (or the quota) is full behind `exc`, or None. The
    chain is followed because libraries wrap it: torch.save writing into a Python
    file raises RuntimeError("[enforce fail at inline_container.cc] ...") whose
    context is the OSError(ENOSPC) our file object raised."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def free_space(path: Path) -> int | None:
    """Bytes an unprivileged writer can still use on the file system of `path` (or of
    its nearest existing parent), None when it cannot be asked."""
    path = Path(path)
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return st.f_bavail * st.f_frsize
    return None


def disk_full_error(path: Path, doing: str, cause: OSError, *, after: str = ""):
    """The one message for a full disk, wherever it is met: what could not be written,
    where, the space left there, and that nothing half-written was kept. `after`
    says what still holds and what to do next (the caller knows)."""
    from .errors import DiskFull
    from .text import format_bytes

    free = free_space(Path(path))
    left = "" if free is None else f", {format_bytes(free)} free there now"
    reason = "disk quota exceeded" if cause.errno == errno.EDQUOT else "no space left on device"
    text = (f"disk full: cannot {doing} ({path}: {reason}{left}); "
            "nothing half-written was kept")
    return DiskFull(text + (f"; {after}" if after else ""))


@contextlib.contextmanager
def open_synced(path: Path) -> Iterator:
    """A new binary file for a library to write into (torch.save): written through
    Python's own file object, so a full disk surfaces as OSError(ENOSPC) in the
    exception chain (disk_full finds it) instead of a C++ stream's bare failure;
    flushed to disk when the block ends."""
    with open(path, "wb") as f:
        yield f
        sync(f)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable. Some platforms and file
    systems cannot open or sync a folder: then there is nothing more to do."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file already written and closed (e.g. by torch.save) to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sync(f) -> None:
    """Flush an open file object's buffers and its data to disk."""
    f.flush()
    os.fsync(f.fileno())


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` (no rename) and flush it to disk; for files inside a
    temporary folder that is itself renamed into place."""
    with open(path, "wb") as f:
        f.write(data)
        sync(f)


def tmp_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def replace(src: Path, dest: Path) -> None:
    """Rename `src` over `dest` in one step, and make the rename durable."""
    os.replace(src, dest)
    fsync_dir(Path(dest).parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write completely (and
    sync); it replaces `path` when the block ends, and is deleted if the block fails."""
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def special_kind(mode: int) -> str | None:
    """What a stat() mode names when it is not a regular file ("a folder", "a named
    pipe (FIFO)", "a device", "a socket"), None for a regular file. Readers ask this
    of a path before opening it: opening a FIFO waits for a writer, for ever (ctrl+o
    on one froze the app), and a device such as /dev/zero never ends."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def write_atomic(path: Path, data: str | bytes, *, durable: bool = True) -> None:
    """Write a file so that a reader sees the old or the new content, never half.
    `durable` also flushes it to disk before the rename (survives a power cut);
    files rewritten every few seconds (a status) can skip that cost. Only a regular
    file or a new path is replaced: a symlink's target gets the content (the link
    stays), and a device or FIFO is streamed into."""
    path = Path(path)
    try:
        kind = os.stat(path).st_mode  # of what a link points at
    except FileNotFoundError:
        kind = None
    if kind is not None and not stat.S_ISREG(kind):
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        # A device, FIFO or socket (/dev/null, /dev/stdout, a named pipe) is written
        # into as a stream; renaming a file over it would replace it (as root, even
        # /dev/null) with a regular file.
        with open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        return
    if path.is_symlink():
        # The link stays a link: its target is what gets the new content.
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open()
        # would (or keep the one the file had), so sharing a config still works.
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            # A write's error names no file; the message must say which.
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def append_line(path: Path, line: bytes, *, durable: bool = True) -> None:
    """Append one line to a journal that other processes append to as well: under an
    exclusive lock, in one write, after repairing a last line torn by a crash (so it
    cannot swallow this one), and flushed to disk when `durable`. Raises OSError
    (ShortWrite when the disk took only part of it)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            try:
                written = os.write(fd, line)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            if written != len(line):
                raise ShortWrite(f"{path}: short write (the disk took only part)")
            if durable:
                os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if needed) taken without waiting: the open
    descriptor that holds it, or None when another process holds it. The lock lives as
    long as any copy of the descriptor (a child given it with pass_fds holds it after
    its starter exits) and goes with the last one, whatever way the holder ends."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class FileLock:
    """An exclusive flock on the file `path` (created if needed), held inside `with`.
    With `remove` the lock file is deleted on release (a download's lock beside its
    .part); a waiter that then holds a lock on the removed file notices (inode
    changed) and locks the new one. Without fcntl (not POSIX) it locks nothing."""

    def __init__(self, path: Path, *, remove: bool = False) -> None:
        self.path = Path(path)
        self.remove = remove
        self.fd: int | None = None

    def __enter__(self) -> "FileLock":
        try:
            import fcntl
        except ImportError:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                self.fd = fd
                return self
            os.close(fd)

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            if self.remove:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None
