"""A real chat-completions server on loopback for the judge's tests (imported as
`judge_server`: pytest puts this folder on sys.path). Each request is answered as
`behave(answer, attempt, body)` says, where `answer` is the model answer found in
the request (the text after 'ANSWER:' in the test records) and `attempt` counts
that answer's requests from 1. Every request is kept (headers and body) so tests
can count what was sent."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

ANSWER = re.compile(r"(ANS-\d+)")


def chat_reply(content: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "judge",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]}
                      ).encode()


class Reply:
    """What the server does with one request."""

    def __init__(self, content: str | None = None, *, status: int = 200, body: bytes | None = None,
                 headers: dict | None = None, delay: float = 0.0, drop: bool = False,
                 trickle: float = 0.0) -> None:
        self.content, self.status, self.body = content, status, body
        self.headers, self.delay, self.drop = headers or {}, delay, drop
        self.trickle = trickle  # seconds between the body's bytes


class JudgeServer:
    def __init__(self, behave: Callable[[str, int, dict], Reply]) -> None:
        self.behave = behave
        self.requests: list[dict] = []  # {"answer", "attempt", "body", "headers", "t"}
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0  # requests being answered at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw)
                text = " ".join(m.get("content", "") for m in body.get("messages", []))
                found = ANSWER.search(text)
                answer = found.group(1) if found else ""
                with server.lock:
                    attempt = 1 + sum(r["answer"] == answer for r in server.requests)
                    server.requests.append({"answer": answer, "attempt": attempt,
                                            "body": body, "headers": dict(self.headers),
                                            "path": self.path, "t": time.monotonic()})
                reply = server.behave(answer, attempt, body)
                with server.lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    if reply.delay:
                        time.sleep(reply.delay)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                if reply.drop:
                    # The connection closes with no reply at all.
                    self.close_connection = True
                    return
                data = reply.body if reply.body is not None else chat_reply(reply.content or "")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if reply.trickle:
                        for i in range(len(data)):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def sent(self, answer: str | None = None) -> int:
        with self.lock:
            return sum(answer is None or r["answer"] == answer for r in self.requests)

    def __enter__(self) -> "JudgeServer":
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __exit__(self, *exc) -> None:
        self.close()
