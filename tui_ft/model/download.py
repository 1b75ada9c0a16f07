"""Download one file over HTTP(S) with urllib: resumable, checked against its size and
sha256, finished by an atomic rename. Progress goes to a `progress(done, total)`
callback (the CLI draws it: commands/progress.py, DownloadProgress).

Why not huggingface_hub's hf_hub_download (issue 14 asked; measured with 2.4.0, the
version transformers brings, against a loopback endpoint): it downloads fine, but
  - a connection cut mid-file is retried in-process from byte 0 (no Range), and when
    it gives up the partial file is deleted: a later run starts over, where this
    client keeps `.part` and resumes it (a 6 GB gpt2-xl on a flaky link);
  - it does not hash what it received: a body that does not match the announced
    ETag is stored as the blob named by that sha256, so a bad download poisons the
    cache that pretrained.py (and transformers) trust by blob name;
  - it logs its retries to stderr itself, and it is no dependency of ours: `pip
    install .` would gain it with hf-xet (an 11 MB native module), httpx, fsspec,
    click and tqdm, and importing it costs 0.2 s against urllib's 0.05 s.
The Hugging Face cache stays shared for reading: pretrained.py finds the pinned file
in it (by revision and blob sha256) before downloading into our own cache."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..fsio import FileLock, replace, sync
from .sources import WeightsError

DEFAULT_HUB_URL = "https://huggingface.co"
OFFLINE_VARS = ("TUI_FT_OFFLINE", "HF_HUB_OFFLINE")
HUB_URL_VARS = ("TUI_FT_HUB_URL", "HF_ENDPOINT")
USER_AGENT = "tui-ft (urllib)"

Progress = Callable[[int, "int | None"], None]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def offline_reason() -> str | None:
    """The variable that forbids network access ("HF_HUB_OFFLINE=1"), or None."""
    for var in OFFLINE_VARS:
        value = os.environ.get(var, "")
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={value}"
    return None


def hub_base_url() -> str:
    for var in HUB_URL_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value.rstrip("/")
    return DEFAULT_HUB_URL


def hub_file_url(repo: str, revision: str, filename: str = "model.safetensors") -> str:
    return f"{hub_base_url()}/{repo}/resolve/{revision}/{filename}"


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, *, expected_sha256: str | None = None,
                  expected_size: int | None = None, progress: Progress | None = None,
                  timeout: float = 30, chunk_size: int = 1 << 20) -> Path:
    """Fetch `url` into `dest` and return `dest`.

    Bytes go to `dest.part` first (an existing one is resumed with a Range request)
    and become `dest` only once the size and sha256 check out. Without
    `expected_sha256`, the hash the server announces (X-Linked-ETag, or an ETag that
    is a sha256) is checked instead. A checksum mismatch deletes the partial file; a
    network error keeps it for the next call. If `dest` already exists (another
    process finished it while this one waited for the lock) and matches what is
    expected, it is returned as it is."""
    reason = offline_reason()
    if reason:
        raise WeightsError(f"not downloading {url}: network access is off ({reason})")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None
    with FileLock(dest.with_name(dest.name + ".lock"), remove=True):
        if dest.is_file() and _matches(dest, expected_sha256, expected_size):
            return dest
        return _Download(url, dest, expected_sha256, expected_size, progress, timeout,
                         chunk_size).run()


def _matches(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or sha256_of(path) == sha256


class _Download:
    def __init__(self, url, dest, sha256, size, progress, timeout, chunk_size):
        self.url = url
        self.dest = dest
        self.part = part_path(dest)
        self.pinned_sha256 = sha256
        self.pinned_size = size
        self.progress = progress
        self.timeout = timeout
        self.chunk_size = chunk_size

    def run(self) -> Path:
        # A second round only after the server said the .part is already whole
        # (416) but it did not verify: then start from byte 0 once.
        for _ in range(2):
            offset = self.part.stat().st_size if self.part.exists() else 0
            if self.pinned_size is not None and offset > self.pinned_size:
                self.part.unlink()
                offset = 0
            result = self._attempt(offset)
            if result is not None:
                return result
        raise WeightsError(f"download of {self.url} did not complete: the server reports "
                           f"the file is complete but it does not verify")

    def _attempt(self, offset: int) -> Path | None:
        request = urllib.request.Request(self.url, headers={
            "User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        redirects = _RecordingRedirects()
        opener = urllib.request.build_opener(redirects)
        try:
            response = opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            headers = [*redirects.headers, exc.headers]
            exc.close()
            if exc.code == 416 and offset:
                return self._finish_whole_part(offset, headers)
            raise WeightsError(_http_error_text(self.url, exc.code, exc.reason)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc) from None
        with response:
            headers = [*redirects.headers, response.headers]
            expected_sha = self.pinned_sha256 or _announced_sha256(headers)
            status = response.status
            digest = hashlib.sha256()
            if status == 206 and offset:
                start, total = _content_range(response.headers.get("Content-Range"))
                if start != offset:
                    # A server that resumes elsewhere than asked: trust nothing, restart.
                    self.part.unlink(missing_ok=True)
                    return None
                _hash_file(self.part, digest)
                mode = "ab"
            else:
                # 200: the whole file (also the answer of a server that ignores Range).
                offset = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            if total is None:
                total = _linked_size(headers)
            if self.pinned_size is not None and total is not None and total != self.pinned_size:
                self.part.unlink(missing_ok=True)
                raise WeightsError(f"size mismatch for {self.url}: expected "
                                   f"{self.pinned_size} bytes, the server offers {total}; "
                                   f"nothing was kept")
            expected_size = self.pinned_size if self.pinned_size is not None else total
            done = offset
            if self.progress:
                self.progress(done, expected_size)
            try:
                with open(self.part, mode) as out:
                    while chunk := response.read(self.chunk_size):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if self.progress:
                            self.progress(done, expected_size)
                    sync(out)
            except (OSError, http.client.HTTPException) as exc:
                raise self._network_error(exc) from None
        if expected_size is not None and done < expected_size:
            raise self._network_error(ConnectionError(
                f"connection closed after {done} of {expected_size} bytes"))
        return self._verify_and_finish(done, expected_size, digest.hexdigest(), expected_sha)

    def _finish_whole_part(self, offset: int, headers: list) -> Path | None:
        """416 to a Range request: the .part may already hold the whole file."""
        _, total = _content_range(headers[-1].get("Content-Range"))
        expected_size = self.pinned_size if self.pinned_size is not None else total
        expected_sha = self.pinned_sha256 or _announced_sha256(headers)
        if expected_size is None or offset != expected_size:
            self.part.unlink(missing_ok=True)
            return None
        digest = hashlib.sha256()
        _hash_file(self.part, digest)
        if expected_sha is not None and digest.hexdigest() != expected_sha:
            self.part.unlink(missing_ok=True)
            return None
        if self.progress:
            self.progress(offset, expected_size)
        return self._verify_and_finish(offset, expected_size, digest.hexdigest(), expected_sha)

    def _verify_and_finish(self, size: int, expected_size: int | None, sha: str,
                           expected_sha: str | None) -> Path:
        if expected_size is not None and size != expected_size:
            self.part.unlink(missing_ok=True)
            raise WeightsError(f"size mismatch for {self.url}: expected {expected_size} "
                               f"bytes, got {size}; the partial file was deleted, run "
                               f"again to download it afresh")
        if expected_sha is not None and sha != expected_sha:
            self.part.unlink(missing_ok=True)
            raise WeightsError(f"checksum mismatch for {self.url}: expected sha256 "
                               f"{expected_sha}, got {sha}; the download was deleted, run "
                               f"again to download it afresh")
        replace(self.part, self.dest)
        return self.dest

    def _network_error(self, exc: BaseException) -> WeightsError:
        reason = getattr(exc, "reason", None) or exc
        kept = ""
        if self.part.exists() and self.part.stat().st_size:
            kept = (f"; the {self.part.stat().st_size} bytes received so far are kept in "
                    f"{self.part} and the next attempt resumes from there")
        return WeightsError(f"download of {self.url} failed: {reason}{kept}")


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib's own handler (Range kept), and remembers each
    hop's headers: the hub announces the file's sha256 (X-Linked-ETag) on the
    redirect, not on the CDN's final answer."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _etag_value(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"').lower()
    return value if _SHA256.match(value) else None


def _announced_sha256(headers: list) -> str | None:
    for h in headers:
        sha = _etag_value(h.get("X-Linked-ETag"))
        if sha:
            return sha
    for h in reversed(headers):
        sha = _etag_value(h.get("ETag"))
        if sha:
            return sha
    return None


def _linked_size(headers: list) -> int | None:
    for h in headers:
        value = h.get("X-Linked-Size")
        if value and value.strip().isdigit():
            return int(value)
    return None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of `bytes START-END/TOTAL` or `bytes */TOTAL`."""
    match = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)


def _http_error_text(url: str, code: int, reason) -> str:
    hint = {
        401: "the repository is private or gated, or the URL is wrong",
        403: "access denied: the repository is private or gated, or the URL is wrong",
        404: "no such file: check the repository name and revision",
    }.get(code, "try again later")
    return f"download of {url} failed: the server answered {code} {reason} ({hint})"
