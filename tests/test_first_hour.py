"""The first hour of a newcomer, from a bare `pip install .`: train on the defaults,
generate the test answers with no flag, grade, export (issue 12's "done when").

The clean venv is made by `python -m venv` and `pip install REPO` (no extra, so no
numpy and no test tools). Only torch is not downloaded again: the venv sees the
torch this test runs with, and torch's own dependencies, through a .pth file naming
a folder that holds exactly those distributions (read from torch's metadata), so a
runtime dependency tui-ft forgot to declare is missing there as it would be on a
fresh machine. The other dependencies come from the package index as for a user."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pip could not reach an index: the test cannot build the venv here (not a tui-ft bug).
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution",
            "Network is unreachable", "NewConnectionError", "ProxyError",
            "No matching distribution found for textual")


def _cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env.pop("PYTHONPATH", None)
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def _torch_closure() -> list[metadata.Distribution]:
    """torch and every distribution it requires (on this platform), as installed."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = ["torch"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker excludes this platform
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _expose_torch(folder: Path) -> None:
    """Symlinks in `folder` to the files of torch's closure, and nothing else."""
    folder.mkdir()
    for dist in _torch_closure():
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)


def _site_packages(env_dir: Path) -> Path:
    return env_dir / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
        "site-packages"


@pytest.fixture(scope="module")
def newcomer_venv(tmp_path_factory) -> Path:
    """A venv with `pip install REPO` only; its bin/ folder."""
    pytest.importorskip("packaging", reason="reading torch's requirements needs packaging")
    try:
        metadata.distribution("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("torch is not installed as a distribution")
    base = tmp_path_factory.mktemp("first-hour")
    env_dir = base / "venv"
    # This test's pip can install into the venv (pip >= 22.3: --python), which saves
    # installing a pip there; an older one needs the venv's own.
    # The version from metadata, never `import pip`: importing pip into the test
    # process switches setuptools' distutils shim off for the rest of the session,
    # and torch.compile's builds in later tests then fail on the stdlib distutils.
    try:
        pip_version = metadata.version("pip")
    except metadata.PackageNotFoundError:
        pytest.skip("pip is not installed")
    own_pip = tuple(int(p) for p in pip_version.split(".")[:2]) < (22, 3)
    try:
        venv.EnvBuilder(with_pip=own_pip, symlinks=True).create(env_dir)
    except Exception as exc:  # noqa: BLE001 -- any reason means no venv on this machine
        pytest.skip(f"cannot create a venv here: {exc}")
    _expose_torch(base / "torch-only")
    (_site_packages(env_dir) / "torch-only.pth").write_text(f"{base / 'torch-only'}\n")
    python = env_dir / "bin" / "python"
    installer = [str(python), "-m", "pip"] if own_pip else \
        [sys.executable, "-m", "pip", "--python", str(python)]
    proc = subprocess.run([*installer, "install", "--quiet", "--disable-pip-version-check",
                           str(ROOT)], capture_output=True, text=True, timeout=300,
                          env=_cli_env())
    if proc.returncode != 0:
        if any(word in proc.stderr for word in _OFFLINE):
            pytest.skip(f"no package index reachable to install tui-ft's dependencies: "
                        f"{proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"pip install {ROOT} failed:\n{proc.stderr}")
    return env_dir / "bin"


@pytest.mark.slow
def test_a_newcomer_trains_generates_grades_and_exports_with_the_defaults(newcomer_venv,
                                                                          tmp_path):
    bin_dir = newcomer_venv
    python = str(bin_dir / "python")
    # The failure this guards against: numpy missing at the first checkpoint.
    probe = subprocess.run([python, "-c", "import numpy"], capture_output=True, text=True)
    assert probe.returncode != 0, "numpy got into the clean venv: the test proves less"
    dirs = {var: tmp_path / name for var, name in (("TUI_FT_CONFIG_DIR", "config"),
                                                   ("TUI_FT_CACHE_DIR", "cache"),
                                                   ("TUI_FT_RUNS_DIR", "runs"))}
    for folder in dirs.values():
        folder.mkdir()
    env = _cli_env(**{k: str(v) for k, v in dirs.items()},
                   PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def tui_ft(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(bin_dir / "tui-ft"), *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 0, f"tui-ft {' '.join(args)}:\n{proc.stderr}"
        # torch's import warns that numpy is missing; it is no fault, so it is not said.
        assert "NumPy" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
        return proc

    # The defaults, only shorter: 10 steps instead of three epochs.
    config = tmp_path / "short.yaml"
    config.write_text("max_steps: 10\n", encoding="utf-8")
    train = tui_ft("train", str(config))
    run_path = Path(train.stdout.strip().splitlines()[-1])
    assert run_path.parent == dirs["TUI_FT_RUNS_DIR"]
    assert list((run_path / "checkpoints").glob("checkpoint-*/model.safetensors"))

    responses = tui_ft("responses", run_path.name)
    lines = [json.loads(line) for line in
             (run_path / "responses.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) > 2 and f"{len(lines)} responses from" in responses.stderr
    assert not (run_path / "responses.jsonl.partial").exists()
    # The default answer length fits the default model: nothing had to be lowered.
    assert {line["generation"]["max_new_tokens"] for line in lines} == {128}
    assert "lowered" not in responses.stderr

    first, second = lines[0], lines[1]
    grade = textwrap.dedent("""
        import sys
        from tui_ft.grade.store import GradeStore
        from tui_ft.runfolder import Run
        store = GradeStore(Run(sys.argv[1]))
        store.mark(sys.argv[2], sys.argv[3], "correct")
        store.mark(sys.argv[4], sys.argv[5], "wrong")
        store.set_note(sys.argv[4], sys.argv[5], "not the expected answer")
        """)
    proc = subprocess.run([python, "-c", grade, str(run_path), first["id"], first["checkpoint"],
                           second["id"], second["checkpoint"]], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr

    out = tmp_path / "graded.jsonl"
    tui_ft("grades", "export", run_path.name, str(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(lines)
    by_id = {row["id"]: row for row in rows}
    assert by_id[first["id"]]["grade"] == "correct"
    assert by_id[second["id"]]["grade"] == "wrong"
    assert by_id[second["id"]]["note"] == "not the expected answer"
    assert sum(row["grade"] == "ungraded" for row in rows) == len(rows) - 2
    assert {row["run"] for row in rows} == {run_path.name}
    assert {row["checkpoint"] for row in rows} == {first["checkpoint"]}
    assert by_id[first["id"]]["response"] == first["response"]


def test_checkpoints_are_written_and_read_without_numpy(tmp_path):
    """In a process where numpy cannot be imported (as after `pip install .`), a
    checkpoint is saved and loaded back bit for bit, in fp32 and bf16."""
    code = textwrap.dedent("""
        import sys
        sys.modules["numpy"] = None  # import numpy fails, as where it is not installed
        import warnings
        warnings.simplefilter("ignore")  # torch says once that numpy is missing
        import torch
        from tui_ft.model.weights import load_model, save_checkpoint_weights
        try:
            torch.zeros(1).numpy()
        except RuntimeError:
            pass
        else:
            raise SystemExit("numpy is still usable: the test proves nothing")
        for dtype in (torch.float32, torch.bfloat16):
            model, _ = load_model("tiny", dtype=dtype)
            folder = sys.argv[1] + "/" + str(dtype)
            save_checkpoint_weights(model, folder)
            again, info = load_model(folder, dtype=dtype)
            for (name, a), (_, b) in zip(model.state_dict().items(),
                                         again.state_dict().items()):
                assert a.dtype == b.dtype == dtype and torch.equal(a, b), name
        print("ok")
        """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=_cli_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
