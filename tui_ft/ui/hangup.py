"""Leaving when the terminal is gone.

Over SSH, a dropped link hangs up the pty and the kernel sends SIGHUP, whose default
action ends the app (a run goes on in its worker process). Where SIGHUP is ignored
(the app started under `nohup`, or by a tool that ignores it), the app would outlive
its terminal, and Textual's input thread then spins on a descriptor that is always
readable and always empty: measured, 115 % of a CPU until someone kills it. A hung-up
tty answers every ioctl with EIO; the app asks once a second and, if so, ends as
SIGHUP would have ended it."""

from __future__ import annotations

import errno
import os
import signal
import sys

try:
    import termios
except ImportError:  # not a POSIX system: no hang-ups to watch for
    termios = None

CHECK_EVERY_S = 1.0


def terminal_hung_up(fd: int) -> bool:
    """Whether `fd` is a terminal that has been hung up (not: never was a terminal)."""
    try:
        termios.tcgetattr(fd)
    except termios.error as exc:
        return bool(exc.args) and exc.args[0] == errno.EIO
    except (OSError, ValueError):
        return False
    return False


def watch(app) -> None:
    """Check the app's terminal every second from now on (not for headless apps)."""
    if termios is None or app.is_headless or sys.__stdin__ is None:
        return
    try:
        fd = sys.__stdin__.fileno()
    except (OSError, ValueError):
        return

    def check() -> None:
        if terminal_hung_up(fd):
            # Nothing can be drawn or asked any more, and everything worth keeping is
            # already on disk (runs, grades, saved parameters): end now, as SIGHUP's
            # default action would, without the shutdown that writes to the terminal.
            os._exit(128 + signal.SIGHUP)

    app.set_interval(CHECK_EVERY_S, check, name="hang-up watch")
