"""UI latency of the real app on a pseudo-terminal: time from `tui-ft` start to its
first frame, and key-press-to-screen latency (a key sent, the first bytes of the
redraw read back) on the Datasets screen while a tiny run trains in a worker.

    python benchmarks/ui_latency.py [--presses 60] [--no-training] [--out FILE]

Prints one JSON object per measurement and one for the machine."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOWN = b"\x1b[B"


def spawn_app(env: dict, cols: int = 100, rows: int = 30):
    import pty

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tui_ft.cli"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    return proc, master, t0


def read_until(master: int, needle: bytes, timeout: float) -> tuple[bytes, float | None]:
    data = b""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                data += os.read(master, 1 << 16)
            except OSError:
                break
            if needle in data:
                return data, time.perf_counter()
    return data, None


def drain(master: int, quiet: float = 0.3) -> None:
    """Read until the app has been silent for `quiet` seconds."""
    last = time.perf_counter()
    while time.perf_counter() - last < quiet:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                if os.read(master, 1 << 16):
                    last = time.perf_counter()
            except OSError:
                return


def quit_app(proc: subprocess.Popen, master: int) -> None:
    """Press q and keep reading: an app blocked on a full terminal cannot quit."""
    os.write(master, b"q")
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 1 << 16)
            except OSError:
                break
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(master)


def key_latency(master: int, key: bytes, timeout: float = 2.0) -> float | None:
    drain(master, 0.15)
    t0 = time.perf_counter()
    os.write(master, key)
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return None
    os.read(master, 1 << 16)
    return (time.perf_counter() - t0) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def start_training(env: dict, tmp: Path) -> tuple[subprocess.Popen, Path]:
    config = tmp / "bench.yaml"
    config.write_text("max_steps: 100000\nlogging_steps: 5\neval_steps: 500\nsave_steps: 500\n"
                      f"output_dir: {tmp / 'run'}\n")
    out = subprocess.run([sys.executable, "-m", "tui_ft.cli", "train", str(config), "--detach"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    run = Path(out.stdout.strip().splitlines()[-1])
    # Wait until it really trains (the first logged loss).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and b"train_loss" in metrics.read_bytes():
            break
        time.sleep(0.5)
    status = json.loads((run / "status.json").read_text())
    return status.get("pid"), run


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count(), "cpu_model": cpu},
            "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "benchmark": "ui_latency"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--starts", type=int, default=5, help="first-frame measurements")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        env = dict(os.environ, TERM="xterm-256color", TEXTUAL_ANIMATIONS="none",
                   TUI_FT_CONFIG_DIR=str(tmp / "config"), TUI_FT_RUNS_DIR=str(tmp / "runs"),
                   TUI_FT_CACHE_DIR=str(tmp / "cache"))
        firsts = []
        for _ in range(args.starts):
            proc, master, t0 = spawn_app(env)
            _, seen = read_until(master, b"records", 20)
            if seen is not None:
                firsts.append((seen - t0) * 1000)
            quit_app(proc, master)
        results.append({"measure": "first_frame_ms", "runs": len(firsts),
                        "median": round(percentile(firsts, 50), 1),
                        "max": round(max(firsts), 1)})

        worker = None
        if not args.no_training:
            worker, _ = start_training(env, tmp)
        try:
            proc, master, _ = spawn_app(env)
            read_until(master, b"records", 20)
            drain(master, 1.0)
            latencies = []
            for _ in range(args.presses):
                value = key_latency(master, DOWN)
                if value is not None:
                    latencies.append(value)
                time.sleep(0.1)
            quit_app(proc, master)
        finally:
            if worker:
                try:
                    os.kill(worker, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        results.append({"measure": "key_to_screen_ms", "while_training": not args.no_training,
                        "presses": len(latencies),
                        "p50": round(percentile(latencies, 50), 1),
                        "p95": round(percentile(latencies, 95), 1),
                        "max": round(max(latencies), 1)})
    results.append(machine())
    lines = [json.dumps(r) for r in results]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
