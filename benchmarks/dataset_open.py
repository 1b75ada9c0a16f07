#!/usr/bin/env python3
"""Benchmark: opening large instruction-data JSONL files with `tui_ft.data.dataset.Dataset`.

For each size (10^4, 10^5, 10^6 records by default) it writes a deterministic
Alpaca-style JSONL file into a temporary folder, then measures, each in a fresh
Python subprocess so that memory numbers start clean:

  open     Dataset(path) + len(), median of --repeat runs
  get      1,000 random ds.get(i) right after the open, median of --repeat runs
  memory   growth of peak RSS during the open (ru_maxrss), the split of the RSS
           growth into anonymous (private heap) and file-backed (mmap'd file pages)
           memory from /proc/self/status where it exists, and the Python
           allocations of the open (tracemalloc, measured in its own run)
  scan     ds.scan() of every record: time and records/s, median of --scan-repeat runs
  bad      the same file with a few bad lines (invalid JSON, invalid UTF-8, a blank
           line, a duplicate id, wrong types...): open time and a scan that must
           report exactly the injected errors

It prints one JSON object per size (JSON lines), then one JSON object describing
the machine (no host name). The temporary files are deleted at the end.

    python benchmarks/dataset_open.py
    python benchmarks/dataset_open.py --sizes 10000,100000 --repeat 3 --out results.jsonl
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data" / "instructions.jsonl"
SEED = 20240601
RANDOM_GETS = 1000

# Words for the longer, explanation-like outputs (so lengths vary like real data).
_FILLER = (
    "the answer follows because each step keeps the same rule so we apply it again "
    "here first note that word letter number order list sentence meaning example "
    "simple past tense plural form result check carefully then write final value "
    "this means when you compare them one by one it becomes clear why"
).split()
# A little non-ASCII text, written as UTF-8 (ensure_ascii=False), as real data has.
_UNICODE = ["café", "naïve", "Straße", "façade", "über", "日本語", "señor", "crème brûlée",
            "Ελληνικά", "—", "…", "“quoted”"]

# Bad lines injected into the "bad" variant at fixed fractions of the file:
# (fraction, kind). "blank" is not an entry and not an error; every other kind is
# exactly one located error.
_BAD_LINES = [
    (0.10, "blank"),
    (0.20, "invalid_json"),
    (0.30, "missing_output"),
    (0.40, "instruction_not_string"),
    (0.50, "duplicate_id"),
    (0.60, "invalid_utf8"),
    (0.70, "not_an_object"),
    (0.80, "empty_instruction"),
]
BAD_ERRORS = sum(1 for _, kind in _BAD_LINES if kind != "blank")


# -- data generation --------------------------------------------------------------


def _load_sample() -> list[dict]:
    with open(SAMPLE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _make_record(base: dict, k: int, rng: random.Random) -> dict:
    rec = {"id": f"bench-{k:07d}", "instruction": base["instruction"],
           "input": base.get("input", ""), "output": base["output"]}
    r = rng.random()
    if r < 0.001:
        # A rare long record (a few KB), as real instruction sets have.
        n = rng.randint(300, 700)
        rec["output"] += " " + " ".join(rng.choice(_FILLER) for _ in range(n)) + "."
    elif r < 0.35:
        n = 1 + int(rng.expovariate(1 / 25))
        rec["output"] += ". " + " ".join(rng.choice(_FILLER) for _ in range(n)).capitalize() + "."
    if rng.random() < 0.02:
        rec["instruction"] += " (" + rng.choice(_UNICODE) + ")"
    return rec


def _bad_line(kind: str) -> bytes:
    if kind == "blank":
        return b"\n"
    if kind == "invalid_json":
        return b'{"id": "bad-json", "instruction": "Say hi", "output": "hi"\n'
    if kind == "missing_output":
        return b'{"id": "bad-missing", "instruction": "Say hi", "input": ""}\n'
    if kind == "instruction_not_string":
        return b'{"id": "bad-type", "instruction": 42, "input": "", "output": "x"}\n'
    if kind == "duplicate_id":
        return b'{"id": "bench-0000000", "instruction": "Again", "input": "", "output": "x"}\n'
    if kind == "invalid_utf8":
        return b'{"id": "bad-utf8", "instruction": "caf\xe9", "input": "", "output": "x"}\n'
    if kind == "not_an_object":
        return b"[1, 2, 3]\n"
    if kind == "empty_instruction":
        return b'{"id": "bad-empty", "instruction": "  ", "input": "", "output": "x"}\n'
    raise ValueError(kind)


def generate(size: int, good_path: Path, bad_path: Path) -> dict:
    """Write `size` records to good_path, and the same records with the bad lines
    swapped in (plus one extra blank line) to bad_path. Deterministic."""
    sample = _load_sample()
    rng = random.Random(SEED)
    bad_at = {int(f * size): kind for f, kind in _BAD_LINES}
    with_input = 0
    chunk_good: list[bytes] = []
    chunk_bad: list[bytes] = []
    with open(good_path, "wb") as good, open(bad_path, "wb") as bad:
        for k in range(size):
            rec = _make_record(sample[k % len(sample)], k, rng)
            with_input += bool(rec["input"])
            line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
            chunk_good.append(line)
            kind = bad_at.get(k)
            if kind == "blank":
                chunk_bad.append(b"\n")
                chunk_bad.append(line)
            elif kind is not None:
                chunk_bad.append(_bad_line(kind))
            else:
                chunk_bad.append(line)
            if len(chunk_good) >= 10000:
                good.write(b"".join(chunk_good))
                bad.write(b"".join(chunk_bad))
                chunk_good.clear()
                chunk_bad.clear()
        good.write(b"".join(chunk_good))
        bad.write(b"".join(chunk_bad))
    nbytes = good_path.stat().st_size
    return {"bytes": nbytes, "mean_record_bytes": round(nbytes / size, 1),
            "with_input_fraction": round(with_input / size, 3)}


# -- measurements (run inside a fresh subprocess) -----------------------------------


def _proc_status_kib() -> dict:
    """RssAnon / RssFile / VmRSS from /proc/self/status (Linux), in KiB."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def _maxrss_bytes() -> int:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 2)


def _worker(spec: dict) -> dict:
    import gc

    from tui_ft.data.dataset import Dataset
    from tui_ft.data.records import Record

    path = spec["path"]
    trial = spec["trial"]
    gc.collect()

    if trial == "tracemalloc":
        import tracemalloc
        tracemalloc.start()
        ds = Dataset(path)
        n = len(ds)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ds.close()
        return {"n": n, "py_alloc_current_mib": _mib(current), "py_alloc_peak_mib": _mib(peak)}

    status0 = _proc_status_kib()
    peak0 = _maxrss_bytes()
    t0 = time.perf_counter()
    ds = Dataset(path)
    n = len(ds)
    t_open = time.perf_counter() - t0
    peak1 = _maxrss_bytes()
    status1 = _proc_status_kib()
    result = {"n": n, "open_s": t_open, "maxrss_delta_mib": _mib(peak1 - peak0)}
    for key in ("RssAnon", "RssFile"):
        if key in status0 and key in status1:
            result[f"{key.lower()}_delta_mib"] = _mib((status1[key] - status0[key]) * 1024)

    if trial == "open":
        rng = random.Random(SEED + 1)
        idx = [rng.randrange(n) for _ in range(RANDOM_GETS)]
        t0 = time.perf_counter()
        good = sum(isinstance(ds.get(i), Record) for i in idx)
        result["gets_s"] = time.perf_counter() - t0
        result["gets_good"] = good
    elif trial == "scan":
        t0 = time.perf_counter()
        scan = ds.scan()
        result["scan_s"] = time.perf_counter() - t0
        result["records"] = len(scan.records)
        result["errors"] = [str(e) for e in scan.errors]
        peak2 = _maxrss_bytes()
        result["scan_maxrss_delta_mib"] = _mib(peak2 - peak1)
    else:
        raise ValueError(trial)
    ds.close()
    return result


def _run_worker(path: Path, trial: str) -> dict:
    spec = json.dumps({"path": str(path), "trial": trial})
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, __file__, "--worker", spec], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {trial} on {path} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver -------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 6)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_size(size: int, workdir: Path, repeat: int, scan_repeat: int) -> dict:
    good = workdir / f"bench-{size}.jsonl"
    bad = workdir / f"bench-{size}-bad.jsonl"
    _log(f"[{size:>9,}] generating ...")
    t0 = time.perf_counter()
    info = generate(size, good, bad)
    gen_s = time.perf_counter() - t0

    _log(f"[{size:>9,}] open + {RANDOM_GETS} gets x{repeat} ...")
    opens = [_run_worker(good, "open") for _ in range(repeat)]
    assert all(o["n"] == size for o in opens), "wrong record count"
    assert all(o["gets_good"] == RANDOM_GETS for o in opens), "a random get failed"
    _log(f"[{size:>9,}] tracemalloc ...")
    tm = _run_worker(good, "tracemalloc")
    _log(f"[{size:>9,}] scan x{scan_repeat} ...")
    scans = [_run_worker(good, "scan") for _ in range(scan_repeat)]
    for s in scans:
        assert s["records"] == size and not s["errors"], s["errors"][:5]

    _log(f"[{size:>9,}] bad-lines variant ...")
    bad_opens = [_run_worker(bad, "open") for _ in range(repeat)]
    bad_scan = _run_worker(bad, "scan")
    assert bad_scan["n"] == size, bad_scan["n"]
    assert len(bad_scan["errors"]) == BAD_ERRORS, bad_scan["errors"]
    assert bad_scan["records"] == size - BAD_ERRORS

    open_s = [o["open_s"] for o in opens]
    gets_s = [o["gets_s"] for o in opens]
    scan_s = _median([s["scan_s"] for s in scans])
    row = {
        "size": size,
        "file_mib": _mib(info["bytes"]),
        "mean_record_bytes": info["mean_record_bytes"],
        "with_input_fraction": info["with_input_fraction"],
        "generate_s": round(gen_s, 2),
        "repeat": repeat,
        "open_ms_median": _ms(_median(open_s)),
        "open_ms_min": _ms(min(open_s)),
        "open_ms_max": _ms(max(open_s)),
        "open_mib_per_s": round(info["bytes"] / 2**20 / _median(open_s), 1),
        "random_gets": RANDOM_GETS,
        "random_gets_ms_median": _ms(_median(gets_s)),
        "random_get_us_each": round(_median(gets_s) / RANDOM_GETS * 1e6, 1),
        "open_maxrss_delta_mib": _median([o["maxrss_delta_mib"] for o in opens]),
        "open_py_alloc_peak_mib": tm["py_alloc_peak_mib"],
        "open_py_alloc_kept_mib": tm["py_alloc_current_mib"],
        "scan_repeat": scan_repeat,
        "scan_s_median": round(scan_s, 3),
        "scan_records_per_s": round(size / scan_s),
        "scan_maxrss_delta_mib": _median([s["scan_maxrss_delta_mib"] for s in scans]),
        "bad_variant": {
            "blank_lines": 1,
            "errors_found": len(bad_scan["errors"]),
            "errors_expected": BAD_ERRORS,
            "open_ms_median": _ms(_median([o["open_s"] for o in bad_opens])),
            "scan_s": round(bad_scan["scan_s"], 3),
            "scan_records_per_s": round(size / bad_scan["scan_s"]),
            "first_errors": bad_scan["errors"][:3],
        },
    }
    for key in ("rssanon", "rssfile"):
        vals = [o[f"{key}_delta_mib"] for o in opens if f"{key}_delta_mib" in o]
        if vals:
            row[f"open_{key}_delta_mib"] = _median(vals)
    # Paths in error messages name the temp dir; keep only the file name.
    row["bad_variant"]["first_errors"] = [e.replace(str(workdir) + os.sep, "")
                                          for e in row["bad_variant"]["first_errors"]]
    good.unlink()
    bad.unlink()
    return row


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    sys.path.insert(0, str(REPO))
    try:
        import tui_ft
        version = tui_ft.__version__
    except Exception:  # pragma: no cover - benchmark still useful without it
        version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": usable,
            "cpu_model": _cpu_model(),
            "mem_total_gib": _mem_total_gib(),
        },
        "date_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "tui_ft_version": version,
        "benchmark": "dataset_open",
        "page_cache": "warm (files were just written)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated record counts (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="open/get runs per size, each a fresh process (default: 5)")
    parser.add_argument("--scan-repeat", type=int, default=3,
                        help="scan runs per size, each a fresh process (default: 3)")
    parser.add_argument("--out", help="also write the JSON lines to this file")
    parser.add_argument("--tmpdir", help="where to write the temporary files "
                        "(default: the system temp folder)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if args.repeat < 1 or args.scan_repeat < 1 or any(s < 10 for s in sizes):
        parser.error("--repeat and --scan-repeat must be >= 1 and sizes >= 10")
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    workdir = Path(tempfile.mkdtemp(prefix="tui-ft-bench-", dir=args.tmpdir))
    try:
        for size in sizes:
            row = bench_size(size, workdir, args.repeat, args.scan_repeat)
            line = json.dumps(row, ensure_ascii=False)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
        line = json.dumps(machine())
        print(line, flush=True)
        if out:
            out.write(line + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
