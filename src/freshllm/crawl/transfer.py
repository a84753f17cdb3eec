"""Bounded HTTP downloads of CC-NEWS listings and WARC files, and a gzip reader that
notices a file cut short.

``requests`` bounds each socket read (``timeout``), never a whole file: a server that
sends one byte a second keeps a download alive forever. :func:`opened` bounds a download
three ways: ``timeout_s`` per connect and per socket read (as before), a total
``deadline_s`` from the request to the last byte (headers included: a watchdog shuts
the download's socket), and a minimum rate, ``min_bytes_per_s`` while waiting for data,
over each ``timeout_s`` of waiting (so a slow reader does not count as a slow server).
Any breach raises :class:`TransferError` with a one-line reason.

:class:`GzipMembers` decompresses a ``.warc.gz`` download member by member (one WARC
record per member in CC-NEWS) and hands the plain WARC to fastwarc, so the file is
decompressed once; at the end of the download an unfinished member means the transfer
was cut short, which a server sending no ``Content-Length`` does not reveal otherwise.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

CHUNK = 1 << 16
MAX_LISTING_BYTES = 256 << 20
_local = threading.local()  # .sockets: the sockets a download in this thread opened


@dataclass(frozen=True)
class Limits:
    timeout_s: float  # per connect / socket read
    deadline_s: float  # the whole download, headers included
    min_bytes_per_s: float = 0.0  # over each timeout_s-long stretch; 0: no minimum

    def tighter(self, seconds: float) -> Limits:
        return Limits(min(self.timeout_s, seconds), min(self.deadline_s, seconds), self.min_bytes_per_s)


class TransferError(Exception):
    """A download that broke a limit, was cut short or is not what it should be (one-line
    reason); ``no_response``: the server accepted the connection but never answered."""

    def __init__(self, reason: str, no_response: bool = False) -> None:
        super().__init__(reason)
        self.no_response = no_response


def _install_socket_tracking() -> None:
    """urllib3 opens its sockets with ``urllib3.util.connection.create_connection``: remember
    the sockets a download opens in this thread (nothing else changes)."""
    from urllib3.util import connection

    original = connection.create_connection
    if getattr(original, "_freshllm_tracking", False):
        return

    def create_connection(*args: Any, **kwargs: Any):
        sock = original(*args, **kwargs)
        sockets = getattr(_local, "sockets", None)
        if sockets is not None:
            sockets.append(sock)
        return sock

    create_connection._freshllm_tracking = True  # type: ignore[attr-defined]
    connection.create_connection = create_connection


class _Watchdog:
    """Shuts the download's sockets at the deadline, so a blocked read returns."""

    def __init__(self, seconds: float) -> None:
        self.sockets: list[Any] = []
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        import socket

        self.fired = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


class Transfer:
    """One streamed GET: ``status``, ``expected`` (Content-Length or None), ``received``,
    and :meth:`read`, which returns what arrived (at most ``n`` bytes; b"" at the end)."""

    def __init__(self, url: str, response: Any, limits: Limits, watchdog: _Watchdog) -> None:
        self.url, self.response, self.limits, self.watchdog = url, response, limits, watchdog
        self.status: int = response.status_code
        length = response.headers.get("Content-Length")
        self.expected = int(length) if length and length.isdigit() else None
        self.received = 0
        self._window_bytes, self._window_wait = 0, 0.0

    def read(self, n: int = CHUNK) -> bytes:
        began = time.monotonic()
        try:
            data = self.response.raw.read1(n)
        except Exception as exc:  # noqa: BLE001 (urllib3/requests/socket errors alike)
            raise self._broken(exc) from exc
        if self.watchdog.fired:
            raise self.deadline_error()
        self.received += len(data)
        self._check_rate(len(data), time.monotonic() - began)
        return data

    def read_all(self, limit: int = MAX_LISTING_BYTES) -> bytes:
        chunks = []
        while chunk := self.read():
            chunks.append(chunk)
            if self.received > limit:
                raise TransferError(f"larger than {limit >> 20} MiB")
        return b"".join(chunks)

    def deadline_error(self) -> TransferError:
        return TransferError(f"not complete within crawl.file_deadline_s={self.limits.deadline_s:g}s "
                             f"({self.received} bytes received)")

    def _broken(self, exc: Exception) -> TransferError:
        import http.client

        from urllib3.exceptions import IncompleteRead, ProtocolError, ReadTimeoutError

        if self.watchdog.fired:
            return self.deadline_error()
        if isinstance(exc, ProtocolError) and any(isinstance(a, (IncompleteRead, http.client.IncompleteRead))
                                                  for a in exc.args):
            return TransferError(f"cut short: {self.received} of {self.expected} bytes (Content-Length)")
        if isinstance(exc, (ReadTimeoutError, TimeoutError)):
            return TransferError(f"no data for crawl.timeout_s={self.limits.timeout_s:g}s "
                                 f"after {self.received} bytes")
        return TransferError(f"connection broken after {self.received} bytes ({type(exc).__name__}: {exc})")

    def _check_rate(self, got: int, waited: float) -> None:
        """The rate while waiting for data, over each ``timeout_s`` of waiting (time the
        reader spends elsewhere, e.g. parsing or a full queue, does not count)."""
        self._window_bytes += got
        self._window_wait += waited
        if self._window_wait < self.limits.timeout_s or not self.limits.min_bytes_per_s:
            return
        rate = self._window_bytes / self._window_wait
        if rate < self.limits.min_bytes_per_s:
            raise TransferError(f"too slow: {rate:.0f} bytes/s over {self._window_wait:.1f}s "
                                f"(crawl.min_bytes_per_s: {self.limits.min_bytes_per_s:g}) "
                                f"after {self.received} bytes")
        self._window_wait, self._window_bytes = 0.0, 0


@contextlib.contextmanager
def opened(url: str, limits: Limits, headers: dict[str, str] | None = None) -> Iterator[Transfer]:
    """A streamed GET of ``url`` within ``limits``. Errors reaching the server raise
    ``requests.ConnectionError`` (as before); a deadline or a timeout during the headers
    raises :class:`TransferError`."""
    import requests

    _install_socket_tracking()
    with _Watchdog(limits.deadline_s) as watchdog, requests.Session() as session:
        _local.sockets = watchdog.sockets
        try:
            response = session.get(url, stream=True, timeout=limits.timeout_s, headers=headers)
        except requests.RequestException as exc:
            if watchdog.fired:
                raise TransferError(f"no response within crawl.file_deadline_s={limits.deadline_s:g}s") from exc
            if isinstance(exc, requests.ReadTimeout):
                raise TransferError(f"no response for crawl.timeout_s={limits.timeout_s:g}s", True) from exc
            raise
        finally:
            _local.sockets = None
        with response:
            yield Transfer(url, response, limits, watchdog)


class GzipMembers:
    """The plain bytes of a (multi-member) gzip download, for fastwarc (``read``/``tell``/
    ``close``); counts the complete members and raises :class:`TransferError` when the
    download ends inside one. A download that is not gzip passes through unchanged."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer
        self.members = 0  # complete gzip members
        self.is_gzip: bool | None = None
        self._input = b""
        self._member: Any = None
        self._ended = False
        self._out = 0

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else CHUNK
        while True:
            if not self._input or (self.is_gzip is None and len(self._input) < 2 and not self._ended):
                if self._ended:
                    return self._at_end()
                chunk = self.transfer.read(CHUNK)
                self._ended = not chunk
                self._input += chunk
                continue
            if self.is_gzip is None:
                self.is_gzip = self._input[:2] == b"\x1f\x8b"
            if not self.is_gzip:
                out, self._input = self._input[:n], self._input[n:]
            else:
                out = self._inflate(n)
            if out:
                self._out += len(out)
                return out

    def _inflate(self, n: int) -> bytes:
        if self._member is None:
            self._member = zlib.decompressobj(wbits=31)
        try:
            out = self._member.decompress(self._input, n)
        except zlib.error as exc:
            raise TransferError(f"broken gzip after {self.members} complete members ({exc})") from exc
        if self._member.eof:
            self._input, self._member = self._member.unused_data, None
            self.members += 1
        else:
            self._input = self._member.unconsumed_tail
        return out

    def _at_end(self) -> bytes:
        if self._member is not None:
            expected = f" of {self.transfer.expected}" if self.transfer.expected is not None else ""
            raise TransferError(f"cut short inside gzip member {self.members + 1} after "
                                f"{self.transfer.received}{expected} bytes")
        return b""

    def drained(self) -> bool:
        """True when nothing is left to read (reads at most one more chunk)."""
        return not self.read(1)

    def tell(self) -> int:
        return self._out

    def close(self) -> None:
        pass
