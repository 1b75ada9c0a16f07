"""How a running training is asked to stop after the current step: SIGTERM ('tui-ft
stop', the app's x), SIGINT (Ctrl-C; a second one quits at once) or the run's STOP
file (which works from any thread and any process)."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path


class StopRequests:
    """Whether a stop was asked for, and by what (`by`: "SIGINT", "SIGTERM", "STOP
    file" or what the trainer sets, such as "stop_at_step"; status.json's stopped_by)."""

    def __init__(self, stop_path: Path) -> None:
        self.stop_path = stop_path
        self.signalled = False
        self.by: str | None = None

    def requested(self) -> bool:
        if self.signalled:
            return True
        if self.stop_path.exists():
            self.by = self.by or "STOP file"
            return True
        return False

    @contextmanager
    def signals_handled(self):
        """SIGTERM and SIGINT ask for a stop while inside; a second Ctrl-C raises
        KeyboardInterrupt. The previous handlers come back on the way out."""
        previous = {}

        def on_signal(signum, frame):
            name = signal.Signals(signum).name
            if self.signalled and signum == signal.SIGINT:
                raise KeyboardInterrupt
            if not self.signalled:
                self.signalled, self.by = True, name
                again = "; Ctrl-C again quits at once, without it" \
                    if signum == signal.SIGINT else ""
                # Said now: a step of a big model can take a while.
                os.write(2, f"\n{name}: stopping after the current step, with a "
                            f"checkpoint{again}\n".encode())

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, on_signal)
            except ValueError:  # not the main thread: the STOP file still works
                break
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
