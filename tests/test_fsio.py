"""tui_ft.fsio: the one home for atomic writes, synced appends and file locks."""

import multiprocessing
import os
from pathlib import Path

import pytest

from tui_ft import fsio


def test_write_atomic_keeps_the_old_content_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    fsio.write_atomic(path, "old\n")
    assert path.read_text() == "old\n"

    def boom(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        fsio.write_atomic(path, b"new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no temp file left


def test_write_atomic_keeps_the_file_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    path.chmod(0o640)
    fsio.write_atomic(path, "y")
    assert path.read_text() == "y"
    assert path.stat().st_mode & 0o777 == 0o640


def test_atomic_path_removes_the_temporary_file_on_failure(tmp_path):
    path = tmp_path / "w.bin"
    with pytest.raises(RuntimeError):
        with fsio.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with fsio.atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [path]


def test_append_line_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a": 1}\n{"torn')
    fsio.append_line(path, b'{"b": 2}\n')
    assert path.read_bytes().split(b"\n") == [b'{"a": 1}', b'{"torn', b'{"b": 2}', b""]


def _append_many(path: str, tag: str) -> None:
    for i in range(200):
        fsio.append_line(Path(path), f"{tag}-{i}-{'x' * 500}\n".encode(), durable=False)


def test_append_line_from_two_processes_never_mixes_lines(tmp_path):
    path = tmp_path / "j.jsonl"
    procs = [multiprocessing.Process(target=_append_many, args=(str(path), t)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    assert all(line.split("-")[0] in "ab" and line.endswith("x" * 500) for line in lines)


def _hold_lock(path: str, started, release) -> None:
    with fsio.FileLock(Path(path)):
        started.set()
        release.wait(30)


def test_file_lock_excludes_another_process_and_removes_its_file(tmp_path):
    lock = tmp_path / "x.lock"
    started, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(lock), started, release))
    holder.start()
    try:
        assert started.wait(30)
        import fcntl

        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        release.set()
        holder.join(30)
    assert lock.exists()  # a plain lock file stays
    with fsio.FileLock(lock, remove=True):
        pass
    assert not lock.exists()
