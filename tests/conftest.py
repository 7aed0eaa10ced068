"""Settings for every test, and a watchdog so that a stuck test ends the run instead of hanging it."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import settings

# No property test has a time limit per example (hypothesis's default is 200 ms): speed is
# measured by bench/, never asserted in tests, and a busy CI machine must not fail one.
settings.register_profile("callwarden", deadline=None)
settings.load_profile("callwarden")

# pytest-timeout (signal method) fails a test that runs too long, but its one alarm covers
# setup, call and teardown together: a teardown that blocks after the alarm has fired, or a
# thread the alarm cannot reach (a stuck SIP phone), used to hang the whole run until CI gave
# up, printing nothing. The watchdog fires well after pytest-timeout would have: it prints
# every thread's stack and ends pytest with EXIT_STUCK.
EXIT_STUCK = 3
WATCHDOG_GRACE = 120.0  # seconds beyond the test's own timeout
EXIT_GRACE = 60.0  # seconds the interpreter may take to exit after the last test


def _test_timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    option = item.config.getoption("timeout", None)  # --timeout=N overrides the ini's
    return float(option if option is not None else item.config.getini("timeout") or 0)


def _stuck(config: pytest.Config | None, what: str) -> None:
    capture = config.pluginmanager.getplugin("capturemanager") if config else None
    if capture is not None:
        capture.suspend_global_capture(in_=True)  # what follows reaches the terminal
    sys.stderr.write(f"\n\nWATCHDOG: {what} is stuck; every thread's stack:\n")
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_STUCK)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    timeout = _test_timeout(item)
    watchdog = None
    if timeout > 0:
        watchdog = threading.Timer(timeout + WATCHDOG_GRACE, _stuck, (item.config, item.nodeid))
        watchdog.daemon = True
        watchdog.name = "test-watchdog"
        watchdog.start()
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()


def pytest_unconfigure(config: pytest.Config) -> None:
    # A thread that never ends (pyVoIP's are not daemons) would keep the interpreter from exiting.
    watchdog = threading.Timer(EXIT_GRACE, _stuck, (None, "the interpreter's exit (a thread that never ends)"))
    watchdog.daemon = True
    watchdog.start()
