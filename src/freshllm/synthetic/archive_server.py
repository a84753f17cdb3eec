"""A loopback HTTP server for a generated archive directory (quiet, threaded)."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

log = logging.getLogger("freshllm.synthetic.warc")


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files, access log at DEBUG level."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        log.debug("archive server: " + format, *args)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # a crawler that stops reading mid-file (quota reached) resets the connection
        log.debug("archive server: connection from %s ended early", client_address, exc_info=True)


@contextlib.contextmanager
def serve_directory(root: str | Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler
                    ) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (ephemeral port) in a thread; yields ``http://127.0.0.1:PORT/``."""
    server = _QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="ccnews-archive-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
