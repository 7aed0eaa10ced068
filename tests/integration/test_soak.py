"""Issue 5: the 2-minute soak CI runs (the full one: scripts/soak, 30 minutes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.harness import LabPbx
from tests.soak.run import soak

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("CALLWARDEN_SOAK_SECONDS", "120"))


@pytest.mark.timeout(SECONDS + 180)
def test_two_minutes_of_calls_and_hotkeys_leave_no_growth(pbx: LabPbx, tmp_path: Path) -> None:
    report = soak(SECONDS, tmp_path)
    assert report.rounds >= max(4, SECONDS // 15)
    # Memory: a few MB of allocator noise is not a leak; a leak per call grows with rounds.
    assert report.rss_growth_bytes < 8 * 2**20, report.as_dict()
    assert report.end.open_fds <= report.warm.open_fds + 2, report.as_dict()
    assert report.end.tasks <= report.warm.tasks + 2, report.as_dict()
    assert report.end.tracked_calls == 0
