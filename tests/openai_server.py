"""A small HTTP server on 127.0.0.1 that speaks the parts of the OpenAI API sc_genept uses.

The real ``openai`` client talks to it over a socket: embeddings, chat completions, file
upload/download and the Batch API. Embeddings are deterministic functions of (model, text,
dimensions). It records every request and can answer the next ones with error codes, or
with malformed answers (``mangle_next`` / ``mangle_all``, see the functions below), so tests
can check what was sent, retries, what a broken server does, and that nothing was paid for
twice. For faults it can also hold requests unanswered (``hold_embeddings_from``, until
``release()``), list batches (``GET /v1/batches``, by ``metadata``), add lines of other jobs
to a batch's output (``extra_batch_output``), and call ``after_request`` on each request
received (e.g. to interrupt the client at a chosen moment).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DEFAULT_DIMS = 8
#: OpenAI's models answer with their own dimension, other names with ``DEFAULT_DIMS``.
MODEL_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def fake_embedding(model: str, text: str, dimensions: int | None) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(f"{model}\x1f{text}".encode()).digest()[:8], "little")
    size = dimensions or MODEL_DIMS.get(model, DEFAULT_DIMS)
    vector = np.random.default_rng(seed).normal(size=size)
    return (vector / np.linalg.norm(vector)).tolist()


# ---- ways a server can answer wrongly (for ``mangle_next`` / ``mangle_all``) ------------


def wrong_dimension(n: int):
    """Every vector cut (or padded with zeros) to ``n`` values."""

    def mangle(answer: dict) -> dict:
        for item in answer["data"]:
            item["embedding"] = (item["embedding"] + [0.0] * n)[:n]
        return answer

    return mangle


def not_json(answer: dict) -> bytes:
    return b'{"object": "list", "data": [{"embedding": [0.1, '  # cut off mid-answer


def without_data(answer: dict) -> dict:
    return {"object": "list", "model": answer["model"]}


def strings_for_numbers(answer: dict) -> dict:
    answer["data"][0]["embedding"] = ["0.1"] * len(answer["data"][0]["embedding"])
    return answer


def one_vector_short(answer: dict) -> dict:
    answer["data"] = answer["data"][:-1]
    return answer


class FakeOpenAI:
    """State of the fake service; ``url`` is the ``base_url`` to give the client."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next: list[int] = []  # status codes to answer the next requests with
        self.polls_until_done = 0  # batch retrievals before a batch completes
        self.hold_batches = False  # keep batches in progress until released
        self.fail_custom_ids: set[str] = set()  # batch requests that come back failed
        self.expire_keeping: int | None = None  # batches expire with only this many done
        self.mangle_next: list = []  # functions that spoil the next embeddings answers
        self.mangle_all = None  # a function that spoils every embeddings answer
        self.retry_after_ms: str | None = "1"  # header of injected errors; None: no header
        self.hold_embeddings_from: int | None = None  # hold the n-th embeddings request on
        self.released = threading.Event()  # ... until this is set (see ``release``)
        self.extra_batch_output: list[dict] = []  # lines of other jobs in every batch output
        self.after_request: Callable[[dict], None] | None = None  # called on each request
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"service": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()  # held requests end (answering a client that may be gone)
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, method: str, path_pattern: str) -> int:
        """Number of recorded requests whose path matches the regex."""
        return sum(
            r["method"] == method and re.fullmatch(path_pattern, r["path"]) is not None
            for r in self.requests
        )

    def release(self) -> None:
        """Answer the held embeddings requests, and hold no more."""
        self.hold_embeddings_from = None
        self.released.set()

    def hold(self) -> None:
        """Block the calling handler if its embeddings request is one to hold."""
        n = self.count("POST", "/v1/embeddings")
        if self.hold_embeddings_from is not None and n >= self.hold_embeddings_from:
            self.released.wait()

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}-{next(self._ids)}"

    # ---- endpoints -------------------------------------------------------------------

    def embeddings(self, body: dict) -> dict | bytes:
        answer = self._embeddings(body)
        if self.mangle_next:
            return self.mangle_next.pop(0)(answer)
        return self.mangle_all(answer) if self.mangle_all else answer

    def _embeddings(self, body: dict) -> dict:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": fake_embedding(body["model"], t, body.get("dimensions")),
            }
            for i, t in enumerate(inputs)
        ]
        n_tokens = sum(len(t.split()) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    def chat(self, body: dict) -> dict:
        question = body["messages"][-1]["content"]
        symbol = question.split("\n", 1)[0].removeprefix("Gene: ").strip()
        answer = f"{symbol} is documented in T cells (answer by {body['model']})."
        return {
            "id": self.new_id("chatcmpl"),
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def upload(self, content: bytes, purpose: str) -> dict:
        file_id = self.new_id("file")
        self.files[file_id] = content
        return _file_object(file_id, len(content), purpose)

    def create_batch(self, body: dict) -> dict:
        batch_id = self.new_id("batch")
        lines = [
            json.loads(line)
            for line in self.files[body["input_file_id"]].decode().splitlines()
            if line.strip()
        ]
        self.batches[batch_id] = {
            "created_at": int(time.time()),
            "body": body,
            "lines": lines,
            "polls": 0,
            "status": "in_progress",
            "output": None,
        }
        return self._batch_object(batch_id)

    def retrieve_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        batch["polls"] += 1
        if (
            batch["status"] == "in_progress"
            and not self.hold_batches
            and batch["polls"] > self.polls_until_done
        ):
            self._complete(batch_id)
        return self._batch_object(batch_id)

    def _complete(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        out = []
        lines = (
            batch["lines"] if self.expire_keeping is None else batch["lines"][: self.expire_keeping]
        )
        for line in lines:
            if line["custom_id"] in self.fail_custom_ids:
                out.append(
                    {
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 500, "body": {}},
                        "error": None,
                    }
                )
            else:
                body = self.embeddings(line["body"])
                if isinstance(body, bytes):  # a mangled answer that is not JSON
                    out.append(body.decode())
                    continue
                out.append(
                    {
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "body": body},
                        "error": None,
                    }
                )
        out += self.extra_batch_output
        output_id = self.new_id("file")
        self.files[output_id] = "\n".join(
            o if isinstance(o, str) else json.dumps(o) for o in out
        ).encode()
        batch.update(
            status="completed" if self.expire_keeping is None else "expired", output=output_id
        )

    def _batch_object(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        n = len(batch["lines"])
        done = {"completed": n, "expired": self.expire_keeping or 0}.get(batch["status"], 0)
        failed = (
            len({ln["custom_id"] for ln in batch["lines"]} & self.fail_custom_ids) if done else 0
        )
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": batch["body"]["endpoint"],
            "input_file_id": batch["body"]["input_file_id"],
            "completion_window": batch["body"]["completion_window"],
            "status": batch["status"],
            "output_file_id": batch["output"],
            "created_at": batch["created_at"],
            "metadata": batch["body"].get("metadata"),
            "request_counts": {"total": n, "completed": done - failed, "failed": failed},
            "errors": None,
        }

    def list_batches(self) -> dict:
        """All batches, newest first, on one page."""
        data = [self._batch_object(i) for i in reversed(self.batches)]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }


def _file_object(file_id: str, size: int, purpose: str) -> dict:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": 0,
        "filename": "requests.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


class _Handler(BaseHTTPRequestHandler):
    service: FakeOpenAI

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _record(self, body) -> bool:
        """Record the request; answer with an injected error if one is queued."""
        request = {
            "method": self.command,
            "path": self.path,
            "body": body,
            "authorization": self.headers.get("Authorization", ""),
            "time": time.monotonic(),
        }
        self.service.requests.append(request)
        if self.service.after_request is not None:
            self.service.after_request(request)
        if self.service.fail_next:
            status = self.service.fail_next.pop(0)
            self._send(
                status,
                {"error": {"message": f"injected {status}", "type": "server_error"}},
                retry_after_ms=self.service.retry_after_ms,
            )
            return True
        return False

    def _send(
        self, status: int, payload, *, retry_after_ms: str | None = None, raw: bytes | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        # a raw body on /v1/embeddings claims to be JSON, as a broken server's would
        is_json = raw is None or self.path == "/v1/embeddings"
        self.send_header(
            "Content-Type", "application/json" if is_json else "application/octet-stream"
        )
        self.send_header("Content-Length", str(len(data)))
        if retry_after_ms:
            self.send_header("retry-after-ms", retry_after_ms)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client is gone (killed, or gave up waiting): nothing to answer

    def send_response(self, *args) -> None:
        try:
            super().send_response(*args)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def end_headers(self) -> None:
        try:
            super().end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            parts = {
                p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                for p in message.iter_parts()
            }
            body = {"purpose": parts["purpose"].decode(), "n_bytes": len(parts["file"])}
        else:
            body = json.loads(raw or b"{}")
            parts = None
        if self._record(body):
            return
        service = self.service
        if self.path == "/v1/embeddings":
            service.hold()
            answer = service.embeddings(body)
            self._send(200, answer, raw=answer if isinstance(answer, bytes) else None)
        elif self.path == "/v1/chat/completions":
            self._send(200, service.chat(body))
        elif self.path == "/v1/files":
            self._send(200, service.upload(parts["file"], body["purpose"]))
        elif self.path == "/v1/batches":
            self._send(200, service.create_batch(body))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_GET(self) -> None:
        if self._record(None):
            return
        if re.fullmatch(r"/v1/batches(\?.*)?", self.path):
            self._send(200, self.service.list_batches())
        elif m := re.fullmatch(r"/v1/batches/([\w-]+)", self.path):
            if m.group(1) not in self.service.batches:  # deleted, or another account's
                self._send(404, {"error": {"message": f"No batch found with id '{m.group(1)}'."}})
            else:
                self._send(200, self.service.retrieve_batch(m.group(1)))
        elif m := re.fullmatch(r"/v1/files/([\w-]+)/content", self.path):
            self._send(200, None, raw=self.service.files[m.group(1)])
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})
