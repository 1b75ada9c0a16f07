"""An LLM judge for a run's answers: any OpenAI-compatible chat-completions endpoint
(a local vLLM, llama.cpp server, Ollama, or a hosted API) reads each answer beside
its instruction and expected output and gives a 0-100 score or a correct/wrong
verdict. Judge prompts are data (YAML, like prompt styles).

Every reply goes to RUN/judgments.jsonl, one line per answer, fsynced before the
next, keyed to the exact answer (as grades are) and to the judge (prompt + model),
so a batch stopped by ctrl+c, a dead server or a crash goes on where it stopped and
never sends an answer the same judge already judged. A reply that says no score is
recorded as unparseable (never dropped, never counted as zero); a request that
failed after its retries is recorded as an error and sent again next time.

The HTTP client (httpx) is an optional extra, imported only when a batch starts:
`pip install "tui-ft[judge]"`. The API key is read from the environment or a
private file, sent in the Authorization header and never written anywhere."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from ..errors import TuiFtError
from ..fsio import append_line, disk_full, disk_full_error, special_kind, try_lock
from ..runfolder import Run, now_iso
from ..tail import JsonlTail
from ..yamlfile import read_yaml_file
from .responses import answer_key, read_responses

JUDGMENTS_FILE = "judgments.jsonl"
JUDGE_LOCK = ".judge.lock"
BUILTIN_DIR = Path(__file__).resolve().parent / "judge_prompts"
# "pairwise" reads two answers to one instruction (tui-ft compare, grade/arena.py).
KINDS = ("score", "verdict", "pairwise")
PLACEHOLDERS = ("instruction", "input", "expected", "response", "input_section",
                "response_a", "response_b")
PAIRWISE_VERDICTS = ("A", "B", "tie", "both_bad")
API_KEY_ENVS = ("TUI_FT_JUDGE_API_KEY", "OPENAI_API_KEY")
EXTRA_HINT = 'pip install "tui-ft[judge]"'
# A reply or error body kept in the journal is cut here: a server that streams a
# novel back must not grow the run folder without bound.
MAX_REPLY_CHARS = 20_000
MAX_RETRY_AFTER_S = 120.0
# A chat reply is a few kB; a body past this is not one, and is not read into memory.
MAX_BODY_BYTES = 4 << 20


class JudgeError(TuiFtError):
    """The judge cannot start or cannot go on (settings, prompt file, server)."""


# -- prompts --------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    kind: str  # "score" (0-100) or "verdict" (correct/wrong)
    user: str
    system: str = ""
    input_section: str = "{input}"
    description: str = ""
    pass_threshold: int = 50
    max_tokens: int = 256
    constrain: bool = True
    source: str = "built-in"

    def identity(self, model: str) -> str:
        """The judge an answer was judged by: what it was asked and by which model.
        pass_threshold only reads replies, so changing it re-sends nothing."""
        basis = json.dumps([model, self.kind, self.system, self.user, self.input_section,
                            self.max_tokens, self.constrain], ensure_ascii=False)
        return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]

    def messages(self, record: dict) -> list[dict]:
        values = {"instruction": _text(record.get("instruction")),
                  "input": _text(record.get("input")),
                  "expected": _text(record.get("expected")),
                  "response": _text(record.get("response")),
                  "response_a": _text(record.get("response_a")),
                  "response_b": _text(record.get("response_b"))}
        values["input_section"] = (_fill(self.input_section, values)
                                   if values["input"].strip() else "")
        out = []
        if self.system:
            out.append({"role": "system", "content": _fill(self.system, values)})
        out.append({"role": "user", "content": _fill(self.user, values)})
        return out

    def response_format(self) -> dict:
        """The JSON schema a constraining server holds the reply to."""
        if self.kind == "score":
            props = {"score": {"type": "integer"}}
        elif self.kind == "pairwise":
            props = {"reason": {"type": "string"},
                     "verdict": {"type": "string", "enum": list(PAIRWISE_VERDICTS)}}
        else:
            props = {"reason": {"type": "string"},
                     "verdict": {"type": "string", "enum": ["correct", "wrong"]}}
        return {"type": "json_schema", "json_schema": {
            "name": "judgment", "strict": True,
            "schema": {"type": "object", "properties": props, "required": list(props),
                       "additionalProperties": False}}}


def _text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


_SLOT = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def _fill(template: str, values: dict) -> str:
    # One pass over the template only: an answer that contains '{expected}' is not
    # filled in again, and other braces (a JSON example) stay as written.
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), template)


_PROMPT_KEYS = {"name", "description", "kind", "system", "user", "input_section",
                "pass_threshold", "max_tokens", "constrain"}


def builtin_prompts() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_prompt(spec: str) -> JudgePrompt:
    """A built-in prompt by name (score100, correct-wrong) or a prompt file."""
    builtin = BUILTIN_DIR / f"{spec}.yaml"
    if "/" not in spec and builtin.is_file():
        return _parse_prompt(read_yaml_file(builtin, JudgeError), builtin, "built-in")
    path = Path(spec).expanduser()
    if not path.exists():
        raise JudgeError(f"{spec}: no such judge prompt (built-in: "
                         f"{', '.join(builtin_prompts())}; or a YAML file)")
    return _parse_prompt(read_yaml_file(path, JudgeError), path, str(path))


def _parse_prompt(data, path: Path, source: str) -> JudgePrompt:
    def bad(message: str) -> JudgeError:
        return JudgeError(f"{path}: {message}")

    if not isinstance(data, dict):
        raise bad("a judge prompt is a mapping with at least 'kind' and 'user'")
    unknown = sorted(str(k) for k in data if k not in _PROMPT_KEYS)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_PROMPT_KEYS))})")
    kind = data.get("kind")
    if kind not in KINDS:
        raise bad(f"'kind' must be score (0-100), verdict (correct/wrong) or pairwise "
                  f"(A/B/tie/both_bad), not {kind!r}")
    texts = {}
    for key in ("user", "system", "input_section", "description", "name"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise bad(f"'{key}' must be text, not {type(value).__name__}")
        texts[key] = value
    if not texts["user"] or not texts["user"].strip():
        raise bad("'user' (the message sent for each answer) is missing or empty")
    needed = ("{response_a}", "{response_b}") if kind == "pairwise" else ("{response}",)
    for slot in needed:
        if slot not in texts["user"]:
            raise bad(f"'user' must contain {slot}: the judge has to see the answer")
    if texts["input_section"] is not None and "{input}" not in texts["input_section"]:
        raise bad("'input_section' must contain {input}")
    numbers = {}
    for key, low, high, default in (("pass_threshold", 0, 100, 50),
                                    ("max_tokens", 1, 1 << 20, 256)):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(f"'{key}' must be a whole number from {low} to {high}, not {value!r}")
        numbers[key] = value
    constrain = data.get("constrain", True)
    if not isinstance(constrain, bool):
        raise bad(f"'constrain' must be true or false, not {constrain!r}")
    return JudgePrompt(name=texts["name"] or path.stem, kind=kind, user=texts["user"],
                       system=texts["system"] or "",
                       input_section=texts["input_section"] or "{input}",
                       description=texts["description"] or "", constrain=constrain,
                       source=source, **numbers)


# -- replies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    score: int | None = None
    verdict: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None or self.verdict is not None


_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
                      r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FENCE = re.compile(r"^```[A-Za-z]*\s*|\s*```$")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3})(?:\.0+)?(?![\w.]|\.\d)")
_DENOMINATOR = re.compile(r"(?:/|\bout\s+of\s+)\s*100\b", re.IGNORECASE)
_CORRECT = re.compile(r"\bcorrect\b", re.IGNORECASE)
_WRONG = re.compile(r"\b(?:wrong|incorrect|not\s+correct)\b", re.IGNORECASE)


def parse_reply(kind: str, text: str) -> Parsed:
    """The score or verdict in a judge's reply, or Parsed() when it says none for
    certain. JSON ({"score": 85}, {"verdict": "wrong", "reason": ...}, in a code
    fence or amid words) first; then plain text: a score is the one whole number
    from 0 to 100 in the reply ("85", "Score: 85/100"), a verdict the one of
    correct/wrong it names. Two candidates, or none, is unparseable: a guess would
    be recorded as the judge's word."""
    # Terminal escapes are not words: "\x1b]0;..." once read as a score of 0.
    text = _FENCE.sub("", _ESCAPES.sub(" ", text).strip())
    value = _json_in(text)
    if isinstance(value, dict):
        parsed = _from_mapping(kind, value)
        if parsed.ok:
            return parsed
        # JSON without the field is not read as words: its numbers mean other things.
        return Parsed()
    if kind == "pairwise":
        return Parsed(verdict=_pair_verdict_in(text))
    if kind == "score":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Parsed(score=_score(value))
        text = _DENOMINATOR.sub(" ", text)
        found = {int(m.group(1)) for m in _NUMBER.finditer(text)}
        found = {n for n in found if 0 <= n <= 100}
        return Parsed(score=found.pop()) if len(found) == 1 else Parsed()
    return Parsed(verdict=_verdict_in(text))


def _json_in(text: str):
    try:
        return json.loads(text)
    except ValueError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(text[start:end + 1])
        except ValueError:
            return None
    return None


def _score(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d{1,3}(?:\.0+)?", value):
            return None
        value = float(value)
    if isinstance(value, (int, float)) and math.isfinite(value) and value == int(value) \
            and 0 <= value <= 100:
        return int(value)
    return None


def _verdict_in(text) -> str | None:
    if not isinstance(text, str):
        return None
    wrong = bool(_WRONG.search(text))
    correct = bool(_CORRECT.search(_WRONG.sub(" ", text)))
    if correct != wrong:
        return "correct" if correct else "wrong"
    return None


_PAIR_WORDS = {"a": "A", "b": "B", "tie": "tie", "both_bad": "both_bad",
               "both bad": "both_bad", "answer a": "A", "answer b": "B"}
_PAIR_MENTION = re.compile(r"\b(?:answer ([ab])\b|(tie)\b|(both[ _]bad)\b)", re.IGNORECASE)


def _pair_verdict_in(text) -> str | None:
    """A, B, tie or both_bad: the reply as one of those words, else the one of them it
    names ("Answer B is better"); two, or none, is no verdict."""
    if not isinstance(text, str):
        return None
    word = text.strip().strip(".!*\"'`").strip().lower()
    if word in _PAIR_WORDS:
        return _PAIR_WORDS[word]
    found = {_PAIR_WORDS[" ".join((m.group(0).lower()).replace("_", " ").split())]
             for m in _PAIR_MENTION.finditer(text)}
    return found.pop() if len(found) == 1 else None


def _from_mapping(kind: str, value: dict) -> Parsed:
    reason = value.get("reason")
    reason = reason if isinstance(reason, str) else None
    if kind == "pairwise":
        return Parsed(verdict=_pair_verdict_in(value.get("verdict")), reason=reason)
    if kind == "score":
        return Parsed(score=_score(value.get("score")), reason=reason)
    raw = value.get("verdict", value.get("grade"))
    verdict = raw.strip().lower() if isinstance(raw, str) else None
    verdict = {"correct": "correct", "wrong": "wrong", "incorrect": "wrong"}.get(verdict or "")
    return Parsed(verdict=verdict, reason=reason)


def passes(prompt_kind: str, judgment: dict, threshold: int) -> bool | None:
    """Whether a judgment says the answer is correct: its verdict, or its score at or
    above `threshold`; None when it says neither."""
    if prompt_kind == "score":
        score = judgment.get("score")
        return None if not isinstance(score, int) else score >= threshold
    verdict = judgment.get("verdict")
    return None if verdict not in ("correct", "wrong") else verdict == "correct"


# -- the journal ----------------------------------------------------------------------


def judgments_path(run: Run) -> Path:
    return run.path / JUDGMENTS_FILE


def _answer_id(record: dict) -> tuple[str, str, str]:
    return (str(record.get("id")), record.get("checkpoint") or "", answer_key(record))


class JudgmentStore:
    """RUN/judgments.jsonl replayed: the last line for each (answer, judge) wins."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path = judgments_path(run)
        self._tail = JsonlTail(self.path)
        self._by: dict[tuple, dict] = {}
        self._latest: dict[tuple, dict] = {}
        self.judges: dict[str, dict] = {}  # judge -> its newest judgment line
        self.refresh()

    def refresh(self) -> None:
        for entry in self._tail.read():
            try:
                key = (str(entry["id"]), entry.get("checkpoint") or "", str(entry["answer"]))
                judge = str(entry["judge"])
            except (KeyError, TypeError):
                continue  # a foreign line: skipped, never fatal
            self._by[key + (judge,)] = entry
            if not entry.get("error"):
                self._latest[key] = entry
                # Ordered by each judge's last line: the newest judge comes last.
                self.judges.pop(judge, None)
                self.judges[judge] = entry

    def entries(self) -> list[dict]:
        """The last line of each (answer, judge), in the order first written."""
        return list(self._by.values())

    def get(self, record: dict, judge: str) -> dict | None:
        return self._by.get(_answer_id(record) + (judge,))

    def latest(self, record: dict) -> dict | None:
        """The newest judgment (not an error) of this exact answer, by any judge."""
        return self._latest.get(_answer_id(record))

    def judged(self, record: dict, judge: str) -> bool:
        entry = self.get(record, judge)
        return entry is not None and not entry.get("error")

    def append(self, entry: dict) -> None:
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            append_line(self.path, line)
        except OSError as exc:
            if full := disk_full(exc):
                raise disk_full_error(self.path, "save the judgment", full,
                                      after="the judgments before it are on disk") from None
            raise JudgeError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self.refresh()


# -- settings -------------------------------------------------------------------------


def read_api_key(env: str | None = None, key_file: str | Path | None = None) -> str | None:
    """The API key: from `key_file` (which only its owner may read), else the
    environment variable `env`, else TUI_FT_JUDGE_API_KEY or OPENAI_API_KEY; None
    when there is none (a local server needs none)."""
    if key_file is not None:
        path = Path(key_file).expanduser()
        try:
            info = path.stat()
        except FileNotFoundError:
            raise JudgeError(f"{path}: no such key file") from None
        except OSError as exc:
            raise JudgeError(f"{path}: cannot read the key file ({exc.strerror})") from None
        kind = special_kind(info.st_mode)
        if kind is not None or not stat.S_ISREG(info.st_mode):
            raise JudgeError(f"{path}: is {kind or 'not a regular file'}, not a key file")
        if info.st_mode & 0o077:
            raise JudgeError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other "
                             f"users read the API key; make it private with 'chmod 600 "
                             f"{path}' and try again")
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise JudgeError(f"{path}: cannot read the key file ({exc})") from None
        if not key:
            raise JudgeError(f"{path}: the key file is empty")
        return key
    if env:
        # Named on purpose: unset is a mistake, not "no key".
        value = os.environ.get(env, "").strip()
        if not value:
            raise JudgeError(f"--api-key-env {env}: the environment variable {env} is "
                             "not set or empty")
        return value
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def public_url(url: str) -> str:
    """The URL with any user:password@ and query taken out (what may be written)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class JudgeSettings:
    base_url: str
    model: str
    prompt: JudgePrompt
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 1.0

    def check(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JudgeError(f"--base-url {self.base_url!r}: expected http(s)://HOST[:PORT]"
                             "/PATH, e.g. http://127.0.0.1:8000/v1")
        if not self.model.strip():
            raise JudgeError("--model: the judge model's name is empty")
        for name, value, low in (("--concurrency", self.concurrency, 1),
                                 ("--timeout", self.timeout, 0.001),
                                 ("--retries", self.retries, 0), ("--backoff", self.backoff, 0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
                raise JudgeError(f"{name} {value}: must be {low} or more")
        if self.concurrency > 256:
            raise JudgeError(f"--concurrency {self.concurrency}: at most 256")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def _httpx():
    try:
        import httpx
    except ImportError:
        raise JudgeError(f"the LLM judge needs the optional HTTP client httpx: "
                         f"{EXTRA_HINT}") from None
    return httpx


# -- one request ----------------------------------------------------------------------


class _Fatal(Exception):
    """A reply that every answer would get (bad key, no such model or URL)."""


class _Failed(Exception):
    """One answer's request failed after its retries."""


class _TooLarge(Exception):
    """A reply body past MAX_BODY_BYTES."""


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _scrub(text: str, secret: str | None) -> str:
    text = text[:MAX_REPLY_CHARS]
    return text.replace(secret, "<api key>") if secret else text


class _Client:
    def __init__(self, settings: JudgeSettings, httpx) -> None:
        self.s = settings
        self.httpx = httpx
        self.constrained = settings.prompt.constrain
        self.requests = 0
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency))

    def _body(self, record: dict, constrained: bool) -> dict:
        prompt = self.s.prompt
        body = {"model": self.s.model, "messages": prompt.messages(record),
                "temperature": 0, "max_tokens": prompt.max_tokens}
        if constrained:
            body["response_format"] = prompt.response_format()
        return body

    async def _post(self, body: dict):
        """The response with its body read, at most MAX_BODY_BYTES of it."""
        async with self.http.stream("POST", self.s.url, json=body) as reply:
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > MAX_BODY_BYTES:
                    raise _TooLarge()
            return self.httpx.Response(reply.status_code, headers=reply.headers,
                                       content=bytes(data), request=reply.request)

    async def ask(self, record: dict) -> tuple[str, bool]:
        """The judge's reply text, and whether the output was constrained. Retries
        429, 5xx, timeouts and dropped connections with exponential backoff (or
        the server's Retry-After); raises _Failed when they run out, _Fatal on a
        reply every answer would get."""
        import asyncio

        httpx = self.httpx
        attempt = 0
        constrained = self.constrained
        while True:
            wait = None
            try:
                self.requests += 1
                # The timeout bounds the whole exchange: httpx's own bounds each read,
                # and a server trickling a byte a second would never end.
                async with asyncio.timeout(self.s.timeout):
                    reply = await self._post(self._body(record, constrained))
            except (httpx.TimeoutException, TimeoutError):
                problem = f"no reply within {self.s.timeout:g} s"
            except _TooLarge:
                raise _Failed(f"a reply larger than {MAX_BODY_BYTES >> 20} MiB") from None
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc or 'dropped'})"
            else:
                code = reply.status_code
                if code == 200:
                    if constrained != self.constrained:
                        # The plain request passed where the constrained one was
                        # refused: this server does not constrain output.
                        self.constrained = False
                    return _content(reply), constrained
                body = _scrub(reply.text.strip(), self.s.api_key)
                problem = f"HTTP {code}: {body[:300]}" if body else f"HTTP {code}"
                if code in (400, 422) and constrained:
                    # Perhaps a server without response_format: the same request
                    # asked plainly (its reply is parsed all the same).
                    constrained = False
                    if _mentions_format(body):
                        self.constrained = False
                    continue
                if code in (401, 403):
                    raise _Fatal(f"{public_url(self.s.url)}: {problem}; check the API key "
                                 f"(--api-key-file, or {' / '.join(API_KEY_ENVS)})")
                if code == 404:
                    raise _Fatal(f"{public_url(self.s.url)}: {problem}; check --base-url "
                                 "(usually ends in /v1) and --model")
                if code not in (408, 429) and code < 500:
                    raise _Failed(problem)
                wait = retry_after(reply.headers.get("Retry-After"))
            if attempt >= self.s.retries:
                raise _Failed(f"{problem} (after {attempt + 1} tries)")
            if wait is None:
                # Jitter keeps N waiting requests from coming back at the same instant.
                wait = self.s.backoff * (2 ** attempt) * (0.75 + random.random() / 2)
            attempt += 1
            await asyncio.sleep(wait)


def _mentions_format(body: str) -> bool:
    low = body.lower()
    return any(word in low for word in ("response_format", "json_schema", "guided"))


def _content(reply) -> str:
    """The message text of a chat-completions reply; a body that is not one is kept
    whole (and will read as unparseable)."""
    try:
        data = reply.json()
        content = data["choices"][0]["message"]["content"]
        if isinstance(content, str):
            return content
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return reply.text


# -- a batch --------------------------------------------------------------------------


def judge_run(run: Run, settings: JudgeSettings, *,
              on_progress: Callable[[int, int], None] | None = None,
              stop: threading.Event | None = None) -> dict:
    """Judge every answer of the run not yet judged by this judge (prompt + model).
    Returns the summary: judged, unparseable, errors, mean_score, pass_rate (over all
    of the run's answers this judge has judged), and sent, skipped, total, stopped.
    `stop` set (or ctrl+c) ends the batch: what is judged is on disk."""
    import asyncio

    settings.check()
    if settings.prompt.kind == "pairwise":
        raise JudgeError(f"--prompt {settings.prompt.name}: a pairwise prompt compares two "
                         "answers; use it with 'tui-ft compare RUN_A RUN_B --judge'")
    httpx = _httpx()
    responses = read_responses(run.responses_path)
    if not responses:
        raise JudgeError(f"{run.responses_path}: no answers to judge yet; make them with "
                         f"'tui-ft responses {run.name}'")
    fd = try_lock(run.path / JUDGE_LOCK)
    if fd is None:
        raise JudgeError(f"{run.path}: another 'tui-ft judge' is judging this run's answers; "
                         "wait for it to end, or stop it, and try again")
    try:
        store = JudgmentStore(run)
        judge = settings.prompt.identity(settings.model)
        pending = [r for r in responses if not store.judged(r, judge)]
        state = {"done": 0, "errors": 0, "sent": 0, "stopped": False,
                 "pending": len(pending)}
        try:
            asyncio.run(_batch(run, settings, httpx, store, judge, pending, state,
                               on_progress, stop))
        except KeyboardInterrupt:
            state["stopped"] = True
            raise JudgeStopped(_summary(store, responses, settings, judge, state)) from None
        return _summary(store, responses, settings, judge, state)
    finally:
        os.close(fd)


class JudgeStopped(KeyboardInterrupt):
    """Ctrl+c during a batch; `summary` says what is on disk."""

    def __init__(self, summary: dict) -> None:
        super().__init__()
        self.summary = summary


async def _batch(run, settings, httpx, store, judge, pending, state, on_progress, stop):
    import asyncio

    client = _Client(settings, httpx)
    prompt = settings.prompt
    gate = asyncio.Semaphore(settings.concurrency)
    # What ends the batch for every answer (a bad key, a full disk): the first one.
    fatal: list[Exception] = []
    total = len(pending)

    async def one(record: dict) -> None:
        async with gate:
            if fatal:
                return
            started = time.monotonic()
            entry = {"id": record.get("id"), "checkpoint": record.get("checkpoint"),
                     "answer": answer_key(record), "judge": judge, "prompt": prompt.name,
                     "kind": prompt.kind, "model": settings.model,
                     "base_url": public_url(settings.base_url)}
            try:
                reply, constrained = await client.ask(record)
            except _Fatal as exc:
                fatal.append(JudgeError(str(exc)))
                return
            except _Failed as exc:
                entry.update(error=_scrub(str(exc), settings.api_key), at=now_iso())
                state["errors"] += 1
            else:
                reply = _scrub(reply, settings.api_key)
                parsed = parse_reply(prompt.kind, reply)
                entry.update(score=parsed.score, verdict=parsed.verdict, reason=parsed.reason,
                             unparseable=not parsed.ok, reply=reply, constrained=constrained,
                             at=now_iso())
                if prompt.kind == "score":
                    # What the score was read against: the Grading screen turns it into
                    # a verdict with it, where a prompt file's name alone would not say.
                    entry["pass_threshold"] = prompt.pass_threshold
            entry["seconds"] = round(time.monotonic() - started, 3)
            if fatal:
                return  # another answer's write failed: nothing more is written
            try:
                store.append(entry)
            except TuiFtError as exc:
                fatal.append(exc)
                return
            state["done"] += 1
            if on_progress is not None:
                on_progress(state["done"], total)

    async def watch(tasks) -> None:
        while stop is not None and not stop.is_set():
            await asyncio.sleep(0.1)
        state["stopped"] = True
        for task in tasks:
            task.cancel()

    try:
        tasks = [asyncio.create_task(one(r)) for r in pending]
        watcher = asyncio.create_task(watch(tasks)) if stop is not None else None
        await asyncio.gather(*tasks, return_exceptions=True)
        if watcher is not None:
            watcher.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        state["sent"] = client.requests
        await client.http.aclose()
    if fatal:
        first = fatal[0]
        if isinstance(first, JudgeError):
            raise JudgeError(f"{first}; {state['done']} answers were judged before it")
        raise first


def _summary(store: JudgmentStore, responses: list[dict], settings: JudgeSettings,
             judge: str, state: dict) -> dict:
    store.refresh()
    prompt = settings.prompt
    judged = unparseable = errors = 0
    last_error = None
    scores: list[int] = []
    passed: list[bool] = []
    for r in responses:
        entry = store.get(r, judge)
        if entry is None:
            continue
        if entry.get("error"):
            errors += 1
            last_error = str(entry["error"])
            continue
        judged += 1
        if entry.get("unparseable"):
            unparseable += 1
            continue
        if isinstance(entry.get("score"), int):
            scores.append(entry["score"])
        ok = passes(prompt.kind, entry, prompt.pass_threshold)
        if ok is not None:
            passed.append(ok)
    return {"judged": judged, "unparseable": unparseable, "errors": errors,
            "mean_score": sum(scores) / len(scores) if scores else None,
            "pass_rate": sum(passed) / len(passed) if passed else None,
            "total": len(responses), "sent": state["sent"],
            "skipped": len(responses) - state["pending"],
            "last_error": last_error, "stopped": state["stopped"], "prompt": prompt.name,
            "kind": prompt.kind, "model": settings.model, "path": str(store.path)}
