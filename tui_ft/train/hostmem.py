"""Keep freed host memory in the process, for training on the CPU.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
mmap and gives it back with munmap when freed. A training step on the CPU allocates
and frees the same large tensors every step (a chunk of logits and its
log-probabilities: 2 x 92 MB for the tiny model at batch 8), so every step faults
those pages in again, zeroed by the kernel: measured on a 2-core VM, 170 ms a step of
which ~50 ms were page faults. With mmap off for the heap and a high trim threshold,
freed chunks stay in the heap and the next step reuses them (121 ms a step).

Process-wide and one-way (glibc has no call that restores its dynamic thresholds), so
only a process that trains on the CPU calls it. Elsewhere (not glibc, or a preloaded
allocator without mallopt) it does nothing and says so.

The price is fragmentation: small allocations split freed big chunks, so the heap
holds more than the working set (measured: RSS 587 MB with glibc's defaults, growing
to ~1 GB over 1,200 steps kept). `release_free_memory` (malloc_trim) hands the free
pages back; the trainer calls it after each evaluation and checkpoint, so the growth
is bounded by what one interval adds, and the step after pays the faults once.

Long-lived allocations made between steps pin the heap where they land, so anything
that keeps allocating as a run goes on grows a kept heap faster than it would grow
glibc's. The one found: bf16 on the CPU, where oneDNN caches a kernel with buffers
for every new matmul shape (measured: 100 steps of gpt2 grew 2.4 to 9 GB kept, to
4.7 GB with glibc's defaults). The trainer rounds those shapes (`Trainer._collate`),
and the run stays flat in either mode."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Freed memory at the top of the heap is returned to the system above this size only.
_TRIM_THRESHOLD = (1 << 31) - 1

_applied: bool | None = None
_libc = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if it took effect."""
    global _applied, _libc
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = _libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = (mallopt(_M_MMAP_MAX, 0) == 1
                and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1)
    return _applied


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim), where
    keep_freed_memory took effect."""
    if not _applied:
        return
    try:
        trim = _libc.malloc_trim
    except AttributeError:
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
