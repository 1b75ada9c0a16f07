"""What the screens share: the configuration being edited and the run in front.
Screens change it through the app and read it again when they come to the front."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..train.run import Run


@dataclass
class AppState:
    config: TrainConfig = field(default_factory=TrainConfig)
    # The YAML file the configuration was loaded from or last saved to.
    config_path: Path | None = None
    # The run the Training and Grading screens show.
    run: Run | None = None
