"""One run on several processes: tui-ft's launcher runs torchrun (PyTorch's own
elastic launcher, `torch.distributed.run`) in this process, which starts one training
worker per device (`python -m tui_ft.runs.worker RUN` with RANK, WORLD_SIZE and
LOCAL_RANK set). This process is the run's detached job: it holds the run lock for
its life, and when a rank dies (a crash, SIGKILL, out of memory) torchrun ends the
others and this process records which rank failed and why in status.json.

One node uses torchrun's standalone rendezvous; several nodes name theirs
(`--nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT`, the same on every node)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ..runfolder import Run, now_iso

# Set for the workers this launcher starts: the launcher holds the run lock (a
# worker started by a plain `torchrun` takes it itself, on rank 0).
LAUNCHED_ENV = "TUI_FT_LAUNCHED"


@dataclass(frozen=True)
class Launch:
    """How many processes train one run, as `tui-ft train` flags give it."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes > 1

    def as_args(self) -> list[str]:
        """The worker's command-line flags that say it (jobs.start_detached)."""
        args = ["--nproc-per-node", str(self.nproc_per_node)]
        if self.nnodes > 1:
            args += ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
                     "--rdzv-endpoint", str(self.rdzv_endpoint)]
        return args


def torchrun_argv(run: Run, launch: Launch, *, resume: Path | None = None) -> list[str]:
    """torchrun's command line (without the program name) for `run`."""
    argv = [f"--nproc-per-node={launch.nproc_per_node}", "--max-restarts=0"]
    if launch.nnodes > 1:
        argv += [f"--nnodes={launch.nnodes}", f"--node-rank={launch.node_rank}",
                 "--rdzv-backend=c10d", f"--rdzv-endpoint={launch.rdzv_endpoint}",
                 f"--rdzv-id={run.name}"]
    else:
        argv.append("--standalone")
    argv += ["-m", "tui_ft.runs.worker", str(run.path)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


def run_distributed(run: Run, launch: Launch, *, resume: Path | None = None) -> str:
    """Train `run` on `launch.nproc_per_node` processes under torchrun, in this
    process; returns the run's final state. Only node 0 records the ending."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run as torchrun

    args = get_args_parser().parse_args(torchrun_argv(run, launch, resume=resume))
    os.environ[LAUNCHED_ENV] = "1"
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if launch.node_rank == 0:
        run.write_status(state="starting", launcher_pid=os.getpid(),
                         world_size=launch.nproc_per_node * launch.nnodes)
    try:
        torchrun(args)
    except ChildFailedError as exc:
        rank, failure = _cause(exc)
        if launch.node_rank == 0:
            _record_rank_failure(run, rank, failure)
        return "failed"
    return run.read_status().get("state", "unknown")


def _cause(exc) -> tuple[int, object]:
    """The rank that ended the run. torchrun's first failure is the first it noticed,
    and a rank whose peer was killed fails at once in its next collective, so both
    can be noticed in one poll: a rank killed by a signal is the cause before one
    that exited with an error."""
    killed = [(f.timestamp, rank, f) for rank, f in exc.failures.items()
              if f.exitcode is not None and f.exitcode < 0]
    if killed:
        _, rank, failure = min(killed, key=lambda k: (k[0], k[1]))
        return rank, failure
    return exc.get_first_failure()


def _record_rank_failure(run: Run, rank: int, failure) -> None:
    """Say which rank ended the run and how. Where rank 0 ended first and recorded
    why (a TrainingError, a full disk), its message stays; a rank 0 that failed only
    because another rank went away is not the cause, the other rank is."""
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    text = (f"rank {rank} (pid {failure.pid}) {how}; torchrun stopped the other ranks. "
            f"Resume from the last checkpoint: tui-ft train --resume {run.path}")
    status = run.read_status()
    if rank == 0 and status.get("state") == "failed" and status.get("error"):
        run.write_status(failed_rank=0)
        return
    run.write_status(state="failed", error=text, failed_rank=rank, finished_at=now_iso())
    run.append_metrics({"step": status.get("step", 0), "epoch": status.get("epoch", 0.0),
                        "event": "failed", "error": text, "rank": rank})
