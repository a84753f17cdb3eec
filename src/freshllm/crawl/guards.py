"""How the stage fails, and what keeps it safe and quiet while fundus crawls.

Every ``requests`` call gets a timeout (fundus sets none) and a local archive allows
HTTP only to its loopback port; Ctrl-C stops the stage with exit code 130 (fundus
swallows ``KeyboardInterrupt``, so the stage tracks SIGINT itself); fundus' own log
handlers are muted in favour of the root handlers, and a progress bar counts the kept
articles. Whole-download limits are in :mod:`.transfer`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
from typing import Any, Iterator
from urllib.parse import urlsplit


class CrawlError(RuntimeError):
    """The crawl cannot produce a valid corpus; the message says why and what to change."""


@contextlib.contextmanager
def guarded_requests(timeout: float, only_host: str | None = None) -> Iterator[None]:
    """Within the block every ``requests`` call gets ``timeout`` (unless it sets one);
    with ``only_host``, requests to any other host are refused (local: loopback only)."""
    import requests

    original = requests.Session.request

    @functools.wraps(original)
    def request(self, method, url, *args, **kwargs):
        if only_host is not None and urlsplit(str(url)).hostname != only_host:
            raise requests.ConnectionError(f"the local archive allows only {only_host}: refused {url}")
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request
    try:
        yield
    finally:
        requests.Session.request = original


class Interrupts:
    """Remembers SIGINT/SIGTERM: fundus swallows the KeyboardInterrupt, the stage must not."""

    def __init__(self) -> None:
        self.hit = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked fundus worker: behave as before the stage
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.hit = True
        raise KeyboardInterrupt(f"signal {signum}")

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt("interrupted")

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():  # signals go to the main thread
            yield self
            return
        global _ACTIVE
        self._previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        _ACTIVE = self
        try:
            yield self
        finally:
            _ACTIVE = None
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def _reset_in_child(self) -> None:
        """In a forked fundus worker, give SIGINT/SIGTERM back their handlers from before the
        stage: a worker blocked on its task queue must die at Pool.terminate()'s SIGTERM (the
        kernel's default action), not wait for a Python handler to run (a pool could hang)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


_ACTIVE: Interrupts | None = None


def _after_fork_in_child() -> None:
    if _ACTIVE is not None:
        _ACTIVE._reset_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def quiet_fundus(verbose: bool = False) -> Iterator[None]:
    """fundus loggers log DEBUG to the root handlers and ERROR to their own stderr handler:
    keep WARNING and up (DEBUG with ``verbose``), shown once through the root handlers."""
    from fundus import logging as fundus_logging

    own = list(fundus_logging.handlers.values())
    levels = {name: lg.level for name, lg in fundus_logging.loggers.items()}
    for lg in fundus_logging.loggers.values():
        lg.setLevel(logging.DEBUG if verbose else logging.WARNING)
        for handler in own:
            lg.removeHandler(handler)
    try:
        yield
    finally:
        for name, level in levels.items():
            fundus_logging.loggers[name].setLevel(level)
            for handler in own:
                fundus_logging.loggers[name].addHandler(handler)


@contextlib.contextmanager
def progress(total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar (articles/s); log lines are printed above it instead of through it."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(), tqdm(total=total, unit="article", desc=desc, mininterval=1.0) as bar:
        yield bar
