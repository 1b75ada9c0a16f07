"""The download code against a real HTTP server on 127.0.0.1 started by the test, serving
a weights file the test makes: full download, resume after a cut connection, checksum
and size mismatches, HTTP errors, offline mode, redirects, locking, progress; then a
made-up pretrained preset fetched through the hub URL scheme and loaded end to end."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import threading
import time

import pytest
import torch
from safetensors.torch import save_file

from tui_ft.commands.progress import DownloadProgress
from tui_ft.model.download import download_file, part_path
from tui_ft.model.gpt import GPT, GPTConfig
from tui_ft.model.presets import Preset
from tui_ft.model.pretrained import fetch_pretrained, find_pretrained, pretrained_cache_path
from tui_ft.model.sources import WeightsError
from tui_ft.model.weights import load_model

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
CONFIG = GPTConfig(vocab_size=2048, context_length=128, n_embd=128, n_layer=2, n_head=4)


# ------------------------------------------------------------------ the fake hub


class Hub:
    """What the loopback server serves, how it misbehaves, and what it was asked."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, bytes] = {}
        self.file_headers: dict[str, dict] = {}
        self.redirects: dict[str, tuple[str, dict]] = {}
        self.cut_after: int | None = None  # the next file answer stops after N bytes
        self.ignore_range = False
        self.chunk_delay = 0.0
        self.requests: list[tuple[str, dict]] = []

    def url(self, path: str) -> str:
        return self.base + path

    def gets(self, path: str) -> list[dict]:
        return [h for p, h in self.requests if p == path]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        hub: Hub = self.server.hub
        hub.requests.append((self.path, dict(self.headers)))
        if self.path in hub.redirects:
            location, extra = hub.redirects[self.path]
            self.send_response(302)
            self.send_header("Location", location)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = hub.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and not hub.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for key, value in hub.file_headers.get(self.path, {}).items():
            self.send_header(key, value)
        self.end_headers()
        if hub.cut_after is not None:
            # The connection drops mid-file: fewer bytes than Content-Length, then EOF.
            cut, hub.cut_after = hub.cut_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        for i in range(0, len(body), 1 << 16):
            self.wfile.write(body[i:i + (1 << 16)])
            if hub.chunk_delay:
                time.sleep(hub.chunk_delay)


@pytest.fixture
def hub(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TUI_FT_OFFLINE", "HF_ENDPOINT", "TUI_FT_HUB_URL"):
        monkeypatch.delenv(var, raising=False)
    # A proxy configured on the machine must not see the loopback requests.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = Hub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.hub = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ the weights file


def hub_layout(model: GPT) -> dict:
    """As the hub's GPT-2 files store it: no `transformer.` prefix, Conv1D weights,
    the causal-mask buffers of old transformers versions, no lm_head."""
    out = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        out[key] = (tensor.t() if key.endswith(CONV1D) else tensor).contiguous().clone()
    for i in range(model.config.n_layer):
        ctx = model.config.context_length
        out[f"h.{i}.attn.bias"] = torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A real safetensors file of a small random GPT (about 3 MB), with its model."""
    torch.manual_seed(1234)
    model = GPT(CONFIG).eval()
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file(hub_layout(model), str(path), metadata={"format": "pt"})
    data = path.read_bytes()
    return {"model": model, "data": data, "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}


@pytest.fixture
def served(hub, weights):
    """The weights at /files/model.safetensors, announcing their sha256 as the hub does."""
    path = "/files/model.safetensors"
    hub.files[path] = weights["data"]
    hub.file_headers[path] = {"X-Linked-ETag": f'"{weights["sha256"]}"'}
    return path


def test_full_download(hub, served, weights, tmp_path):
    seen = []
    dest = tmp_path / "cache" / "model.safetensors"
    result = download_file(hub.url(served), dest, progress=lambda d, t: seen.append((d, t)))
    assert result == dest
    assert dest.read_bytes() == weights["data"]
    assert not part_path(dest).exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.safetensors"]
    assert seen[-1] == (weights["size"], weights["size"])
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "Range" not in hub.gets(served)[0]


def test_resume_after_cut_connection(hub, served, weights, tmp_path):
    cut = 1_000_000
    hub.cut_after = cut
    dest = tmp_path / "model.safetensors"
    with pytest.raises(WeightsError) as info:
        download_file(hub.url(served), dest, expected_sha256=weights["sha256"])
    message = str(info.value)
    assert hub.url(served) in message and "resumes" in message
    assert not dest.exists()
    assert part_path(dest).stat().st_size == cut

    download_file(hub.url(served), dest, expected_sha256=weights["sha256"])
    assert hub.gets(served)[-1]["Range"] == f"bytes={cut}-"
    assert dest.read_bytes() == weights["data"]
    assert not part_path(dest).exists()


def test_checksum_mismatch_leaves_nothing(hub, served, weights, tmp_path):
    dest = tmp_path / "model.safetensors"
    wrong = "0" * 64
    with pytest.raises(WeightsError, match="checksum mismatch") as info:
        download_file(hub.url(served), dest, expected_sha256=wrong)
    assert wrong in str(info.value) and weights["sha256"] in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_announced_hash_is_checked_when_none_is_pinned(hub, served, tmp_path):
    hub.file_headers[served] = {"X-Linked-ETag": '"' + "ab" * 32 + '"'}
    with pytest.raises(WeightsError, match="checksum mismatch.*" + "ab" * 32):
        download_file(hub.url(served), tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_leaves_nothing(hub, served, weights, tmp_path):
    with pytest.raises(WeightsError, match="size mismatch"):
        download_file(hub.url(served), tmp_path / "model.safetensors",
                      expected_size=weights["size"] + 1)
    assert list(tmp_path.iterdir()) == []


def test_not_found_is_a_clear_error(hub, tmp_path):
    url = hub.url("/nobody/nothing/resolve/main/model.safetensors")
    with pytest.raises(WeightsError) as info:
        download_file(url, tmp_path / "model.safetensors")
    assert "404" in str(info.value) and url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TUI_FT_OFFLINE", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.safetensors"
    with pytest.raises(WeightsError, match="download of .* failed") as info:
        download_file(url, tmp_path / "model.safetensors", timeout=5)
    assert url in str(info.value)


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TUI_FT_OFFLINE"])
def test_offline_makes_no_request(hub, served, tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(WeightsError, match=var):
        download_file(hub.url(served), tmp_path / "model.safetensors")
    assert hub.requests == []
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_followed_and_the_hop_hash_is_used(hub, weights, tmp_path):
    """As the hub answers: /resolve/ redirects (announcing the LFS sha256 in
    X-Linked-ETag) to a CDN whose ETag is no sha256; here through two hops, one of
    them relative."""
    blob = f"/cdn/{weights['sha256']}"
    hub.files[blob] = weights["data"]
    hub.file_headers[blob] = {"ETag": '"not-a-sha256"'}
    hub.redirects["/r/resolve/main/model.safetensors"] = (
        "/hop", {"X-Linked-ETag": f'"{weights["sha256"]}"',
                 "X-Linked-Size": str(weights["size"])})
    hub.redirects["/hop"] = (hub.url(blob), {})
    dest = tmp_path / "model.safetensors"
    download_file(hub.url("/r/resolve/main/model.safetensors"), dest)
    assert dest.read_bytes() == weights["data"]
    assert [p for p, _ in hub.requests] == ["/r/resolve/main/model.safetensors", "/hop", blob]

    # The hop's hash really is the one checked.
    hub.redirects["/r/resolve/main/model.safetensors"] = ("/hop", {"X-Linked-ETag": "f" * 64})
    with pytest.raises(WeightsError, match="checksum mismatch"):
        download_file(hub.url("/r/resolve/main/model.safetensors"),
                      tmp_path / "again" / "model.safetensors")


def test_resume_keeps_range_across_redirects(hub, weights, tmp_path):
    blob = "/cdn/blob"
    hub.files[blob] = weights["data"]
    hub.redirects["/resolve"] = (blob, {"X-Linked-ETag": weights["sha256"]})
    dest = tmp_path / "model.safetensors"
    part_path(dest).write_bytes(weights["data"][:12345])
    download_file(hub.url("/resolve"), dest)
    assert hub.gets(blob)[0]["Range"] == "bytes=12345-"
    assert dest.read_bytes() == weights["data"]


def test_complete_part_answered_416_is_verified_and_used(hub, served, weights, tmp_path):
    dest = tmp_path / "model.safetensors"
    part_path(dest).write_bytes(weights["data"])
    download_file(hub.url(served), dest, expected_sha256=weights["sha256"])
    assert [h.get("Range") for h in hub.gets(served)] == [f"bytes={weights['size']}-"]
    assert dest.read_bytes() == weights["data"]
    assert not part_path(dest).exists()


def test_bad_part_answered_416_is_replaced(hub, served, weights, tmp_path):
    dest = tmp_path / "model.safetensors"
    part_path(dest).write_bytes(b"\0" * weights["size"])  # right size, wrong bytes
    download_file(hub.url(served), dest, expected_sha256=weights["sha256"])
    assert [h.get("Range") for h in hub.gets(served)] == [f"bytes={weights['size']}-", None]
    assert dest.read_bytes() == weights["data"]


def test_server_ignoring_range_means_start_over(hub, served, weights, tmp_path):
    hub.ignore_range = True
    dest = tmp_path / "model.safetensors"
    part_path(dest).write_bytes(b"garbage that must not stay at the front")
    download_file(hub.url(served), dest)
    assert hub.gets(served)[0]["Range"] == "bytes=39-"
    assert dest.read_bytes() == weights["data"]


def test_two_downloads_of_one_file_do_not_collide(hub, served, weights, tmp_path):
    """The second waits on the lock, then finds the finished file: one transfer."""
    hub.chunk_delay = 0.01
    dest = tmp_path / "model.safetensors"
    results, errors = [], []

    def fetch():
        try:
            results.append(download_file(hub.url(served), dest,
                                         expected_sha256=weights["sha256"]))
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == [dest, dest]
    assert len(hub.gets(served)) == 1
    assert dest.read_bytes() == weights["data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_terminal_progress_is_plain_and_throttled():
    out = io.StringIO()
    bar = DownloadProgress("downloading gpt2", stream=out, min_interval=0.25)
    total = 548_000_000
    for done in range(0, total, total // 1000):  # 1000 calls within a few ms
        bar(done, total)
    bar(total, total)
    bar(total, total)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 3  # the first call, perhaps one more, and the end
    assert lines[0].startswith("downloading gpt2  0.0 / 548.0 MB")
    assert "MB/s" in lines[0]
    assert lines[-1].startswith("downloading gpt2  548.0 / 548.0 MB  100%")
    assert "\x1b" not in out.getvalue()

    unknown = io.StringIO()
    bar = DownloadProgress("x", stream=unknown, min_interval=0)
    bar(0, None)
    bar(2_500_000, None)
    assert unknown.getvalue().splitlines()[-1].startswith("x  2.5 MB  ")


def test_terminal_progress_shows_eta():
    bar = DownloadProgress("dl", stream=io.StringIO())
    line = bar.format(100_000_000, 400_000_000, elapsed=10.0, fetched=100_000_000)
    assert line == "dl  100.0 / 400.0 MB   25%  10.0 MB/s  ETA 30s"


# ------------------------------------------------------- pretrained preset end to end


def made_up_preset(weights, **changes) -> Preset:
    fields = dict(name="test-tiny", n_layer=CONFIG.n_layer, n_head=CONFIG.n_head,
                  n_embd=CONFIG.n_embd, context_length=CONFIG.context_length,
                  vocab_size=CONFIG.vocab_size, hub_repo="test/tiny-gpt", revision="r1",
                  size=weights["size"], sha256=weights["sha256"])
    fields.update(changes)
    return Preset(**fields)


def serve_like_the_hub(hub, weights, repo="test/tiny-gpt", revision="r1") -> str:
    resolve = f"/{repo}/resolve/{revision}/model.safetensors"
    blob = f"/cdn-lfs/{weights['sha256']}"
    hub.files[blob] = weights["data"]
    hub.redirects[resolve] = (hub.url(blob), {"X-Linked-ETag": f'"{weights["sha256"]}"'})
    return resolve


def test_pretrained_preset_downloads_once_and_loads(hub, weights, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty HF cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TUI_FT_HUB_URL", hub.base)
    resolve = serve_like_the_hub(hub, weights)
    preset = made_up_preset(weights)
    seen = []

    model, info = load_model(preset, progress=lambda d, t: seen.append((d, t)))
    assert info.kind == "preset-pretrained" and info.source == "test-tiny"
    assert info.weights_path == pretrained_cache_path(preset)
    assert info.weights_path.read_bytes() == weights["data"]
    assert [p for p, _ in hub.requests][0] == resolve
    assert seen[-1] == (weights["size"], weights["size"])
    assert not model.training
    ids = torch.randint(0, CONFIG.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), weights["model"](ids), rtol=0, atol=1e-5)

    # Cached now: found without the network.
    count = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert find_pretrained(preset) == pretrained_cache_path(preset)
    _, again = load_model(preset)
    assert again.weights_path == info.weights_path
    assert len(hub.requests) == count


def test_pretrained_preset_offline_names_url_and_place(hub, weights, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TUI_FT_HUB_URL", hub.base)
    monkeypatch.setenv("TUI_FT_OFFLINE", "1")
    serve_like_the_hub(hub, weights)
    preset = made_up_preset(weights)
    with pytest.raises(WeightsError) as info:
        fetch_pretrained(preset)
    message = str(info.value)
    assert f"{hub.base}/test/tiny-gpt/resolve/r1/model.safetensors" in message
    assert str(pretrained_cache_path(preset)) in message
    assert "TUI_FT_OFFLINE=1" in message and "--model" in message
    assert hub.requests == []


def test_pretrained_download_failure_keeps_the_hint(hub, weights, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", hub.base)  # HF's own variable works too
    preset = made_up_preset(weights, hub_repo="test/absent")
    with pytest.raises(WeightsError) as info:
        fetch_pretrained(preset)
    message = str(info.value)
    assert "404" in message and str(pretrained_cache_path(preset)) in message
    assert not pretrained_cache_path(preset).exists()
