"""What the screens share: the configuration being edited and the run in front.
Screens change it through the app and read it again when they come to the front."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..runfolder import Run


@dataclass
class AppState:
    config: TrainConfig = field(default_factory=TrainConfig)
    # The YAML file the configuration was loaded from or last saved to.
    config_path: Path | None = None
    # The run the Training and Grading screens show.
    run: Run | None = None
    # Runs started or resumed from this app: on quitting, those still training are
    # named, with how to reopen them.
    started: list[Run] = field(default_factory=list)

    def running_runs(self) -> list[Run]:
        """The runs this app knows of (started here, or in front) that still train."""
        out: list[Run] = []
        for run in [*self.started, *([self.run] if self.run is not None else [])]:
            if all(r.path != run.path for r in out) and run.state() in ("running",
                                                                        "starting"):
                out.append(run)
        return out
