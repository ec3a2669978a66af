"""A real HTTP server on 127.0.0.1 that serves a folder and records every request.

:meth:`FileServer.stream` adds a hostile path: a body sent in chunks, with no length or a
false one, slowly if asked, for the download limits to be tested against a real socket;
:meth:`FileServer.redirect` one that sends the client elsewhere.
"""

from __future__ import annotations

import http.server
import threading
import time
from functools import partial
from pathlib import Path


class FileServer:
    """Serves ``root``; ``requests`` lists the paths asked for. Use as a context manager."""

    def __init__(self, root: Path):
        self.root, self.requests, self.streams, self.redirects = root, [], {}, {}
        self._closing = threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.requests.append(self.path)

            def do_GET(self):
                name = self.path.lstrip("/")
                if name in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[name])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                stream = server.streams.get(name)
                if stream is None:
                    return super().do_GET()
                return server._send_stream(self, **stream)

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(root))
        )
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stream(
        self,
        name: str,
        *,
        chunk: bytes = b"\0" * 65536,
        count: int = 1000,
        delay: float = 0.0,
        length: int | None = None,
    ) -> str:
        """Serve ``name`` as ``count`` times ``chunk``, ``delay`` seconds apart; its URL.

        No ``Content-Length`` unless ``length`` is given (which may be a lie): the body
        ends when the server closes the connection, as an endless or slow server's does.
        """
        self.streams[name] = {"chunk": chunk, "count": count, "delay": delay, "length": length}
        return self.url(name)

    def redirect(self, name: str, location: str) -> str:
        """Answer ``name`` with a redirect to ``location``; its URL."""
        self.redirects[name] = location
        return self.url(name)

    def _send_stream(self, handler, *, chunk, count, delay, length) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            for _ in range(count):
                if self._closing.is_set():
                    return
                handler.wfile.write(chunk)
                handler.wfile.flush()
                if delay:
                    time.sleep(delay)
        except OSError:  # the client stopped reading: what a download limit does
            return

    def close(self) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
