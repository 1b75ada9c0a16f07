"""Files to read that are not regular files (issue 13): ctrl+o on a FIFO froze the app,
and `tui-ft train FIFO` or `tui-ft --config FIFO` hung, waiting for a writer that
never comes; a FIFO or a device as the dataset read as "the file is empty". Each is
now refused before it is opened, naming the path and what it is. Real FIFOs
(os.mkfifo), a real socket and /dev/zero; real subprocesses with a timeout; the app
through Pilot."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from tui_ft.config import TrainConfig
from tui_ft.data.dataset import Dataset
from tui_ft.data.styles import load_styles
from tui_ft.errors import DatasetError, TuiFtError
from tui_ft.text import visible
from tui_ft.yamlfile import MAX_YAML_BYTES, read_yaml_file

from helpers import pilot_wait_for as wait_for

FIFO_SAYS = "is a named pipe (FIFO)"


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


@contextlib.contextmanager
def rescued(fifo: Path, after: float = 15.0):
    """If something opens `fifo` to read and blocks (the fault), open its other end
    after `after` seconds so that the test fails instead of hanging. Yields a list
    that holds True once a rescue was needed."""
    needed: list[bool] = []
    stop = threading.Event()

    def rescue() -> None:
        if stop.wait(after):
            return
        while not stop.is_set():
            try:  # succeeds only while a reader waits on the other end
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    return
                stop.wait(0.05)
                continue
            needed.append(True)
            os.close(fd)
            return

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield needed
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def a_socket(tmp_path):
    path = tmp_path / "sock.jsonl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


# -- the one check, where files are read ----------------------------------------------

def test_dataset_refuses_every_kind_of_special_file(fifo, a_socket, tmp_path):
    cases = [(fifo, FIFO_SAYS), (a_socket, "is a socket"), (tmp_path, "is a folder")]
    if os.path.exists("/dev/zero"):
        cases.append((Path("/dev/zero"), "is a device"))
    link = tmp_path / "link.jsonl"
    link.symlink_to(fifo)
    cases.append((link, FIFO_SAYS))  # what the link points at is what counts
    for path, says in cases:
        with rescued(fifo) as needed, pytest.raises(DatasetError) as err:
            Dataset(path)
        assert str(err.value) == f"{path}: {says}, not a dataset file"
        assert not needed


def test_yaml_files_refuse_a_fifo_and_a_huge_file(fifo, tmp_path):
    with rescued(fifo) as needed:
        with pytest.raises(TuiFtError, match=r"pipe\.jsonl: is a named pipe \(FIFO\), not a "
                                             r"YAML file"):
            TrainConfig.load(fifo)
        with pytest.raises(TuiFtError, match="is a device"):
            read_yaml_file("/dev/zero")
    assert not needed
    huge = tmp_path / "huge.yaml"
    huge.write_text("seed: 1\n" + "# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    with pytest.raises(TuiFtError, match=r"huge\.yaml: 1\.0 MiB is too large"):
        read_yaml_file(huge)


def test_a_fifo_among_the_user_styles_is_one_error(config_dir):
    styles = config_dir / "styles"
    styles.mkdir()
    os.mkfifo(styles / "mine.yaml")
    with rescued(styles / "mine.yaml") as needed:
        catalog = load_styles()
    assert not needed
    assert any("mine.yaml: is a named pipe (FIFO)" in e for e in catalog.errors)
    assert "alpaca" in catalog.styles


# -- the command line -------------------------------------------------------------------

def test_cli_data_commands_refuse_a_fifo(run_cli, fifo):
    for args in (("data", "inspect", fifo), ("data", "inspect", fifo, "--json"),
                 ("data", "preview", fifo, "--index", "0")):
        proc = run_cli(*args, timeout=30)  # a hang is TimeoutExpired
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.strip() == f"tui-ft: error: {fifo}: {FIFO_SAYS}, not a dataset file"


def test_cli_train_refuses_a_fifo_as_its_config(run_cli, fifo):
    proc = run_cli("train", fifo, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert f"tui-ft: error: {fifo}: {FIFO_SAYS}, not a YAML file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_train_refuses_a_fifo_as_its_dataset(run_cli, fifo, tmp_path):
    config = tmp_path / "c.yaml"
    TrainConfig(dataset=str(fifo), max_steps=1).save(config)
    proc = run_cli("train", config, "--output-dir", tmp_path / "run", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"tui-ft: error: {fifo}: {FIFO_SAYS}, not a dataset file" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the app ------------------------------------------------------------------------------

async def test_ctrl_o_on_a_fifo_is_refused_and_the_app_answers(fifo):
    from tui_ft.ui.app import create_app
    from tui_ft.ui.screens.params import ParamsScreen

    app = create_app(start_mode="params")
    with rescued(fifo) as needed:
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ParamsScreen))
            screen = app.screen
            before = app.state.config
            start = time.monotonic()
            await pilot.press("ctrl+o")
            screen.query_one("#path-input", Input).value = str(fifo)
            await pilot.press("enter")
            assert time.monotonic() - start < 10 and not needed
            message = screen.message_text()
            assert message == visible(f"{fifo}: {FIFO_SAYS}, not a YAML file")
            assert app.state.config is before and app.state.config_path is None
            # Still answering keys: escape closes the path bar.
            await pilot.press("escape")
            assert not screen.query_one("#path-bar").has_class("shown")
    assert not needed


async def test_datasets_screen_refuses_a_fifo(fifo):
    from tui_ft.ui.app import create_app
    from tui_ft.ui.widgets.record_list import RecordList

    with rescued(fifo) as needed:
        app = create_app(fifo)  # tui-ft --dataset FIFO
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.load_error is not None, timeout=10)
            assert screen.load_error == f"{fifo}: {FIFO_SAYS}, not a dataset file"
            assert FIFO_SAYS in str(screen.query_one("#dataset-info").content)
            # `o` and a FIFO typed as the path: refused the same way, keys still work.
            other = fifo.with_name("other.jsonl")
            os.mkfifo(other)
            screen.load_error = None
            await pilot.press("o")
            field = screen.query_one("#dataset-path", Input)
            assert field.has_focus
            field.value = str(other)
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.load_error is not None, timeout=10)
            assert screen.load_error == f"{other}: {FIFO_SAYS}, not a dataset file"
            assert screen.query_one(RecordList).has_focus
            await pilot.press("e")
            assert screen.side == "errors"
    assert not needed
