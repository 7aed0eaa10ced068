"""Issue 6: every benchmark still runs (tiny ``--smoke`` versions; their timing is not checked).

The full benchmarks: ``bench/run`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callwarden.state.tracker import CallTracker
from tests.integration.harness import REPO, LabPbx

pytestmark = pytest.mark.integration


def run_bench(name: str, out: Path, *extra: str, timeout: float = 240) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"bench.{name} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["bench"] == name
    assert data["smoke"] is True
    assert data["machine"]["nproc"] >= 1
    return data


@pytest.mark.timeout(300)
def test_ingest_smoke(tmp_path: Path) -> None:
    data = run_bench("ingest", tmp_path / "ingest.json")
    variants = {run["variant"] for run in data["runs"]}
    assert variants == {"daemon", "daemon-parse-all", "panoramisk", "panoramisk-async", "minimal", "daemon-call-user"}
    for run in data["runs"]:
        assert run["events"] > 0 and run["events_per_second"] > 0, run
        if run["variant"].startswith("daemon"):
            assert run["hotkeys_decided"] >= 1, run  # the sentinel hotkey went the whole way
            assert run["hotkeys_rejected"] == {} and run["frames_tampered"] == 0, run
    assert data["runs"][0]["maxrss_kb"] > 0
    assert {"a/b", "a/c", "b/c"} <= set(data["summary"]["ratios"])
    (memory,) = data["memory"]
    assert memory["calls"] == 50 and memory["channels"] == 100
    assert 0 < memory["state_bytes_per_call"] < 64 * 1024


@pytest.mark.timeout(300)
def test_latency_smoke(tmp_path: Path) -> None:
    data = run_bench("latency", tmp_path / "latency.json")
    (run,) = data["runs"]
    assert run["hotkeys"] > 0
    assert run["unanswered"] == 0, "every injected hotkey got its AMI action"
    assert run["latency"]["n"] == run["hotkeys"]
    assert run["redirects_per_hotkey"] == [1], "one Redirect per hotkey: acted on exactly once"
    assert run["store_transaction"]["n"] > 0
    assert run["latency_without_store_transaction"]["n"] > 0


@pytest.mark.timeout(300)
def test_e2e_smoke(pbx: LabPbx, tmp_path: Path) -> None:
    # The session holds the lab lock (the pbx fixture): the benchmark must not wait for it.
    data = run_bench("e2e", tmp_path / "e2e.json", "--lab-lock-held")
    (run,) = data["runs"]
    assert run["heard"] == run["calls"] == 2, run
    assert run["exactly_once"], run["per_call"]
    assert run["latency"]["n"] == 2
    ami = run["ami"]
    assert ami["all"]["events"] > ami["call,user"]["events"] > ami["call,user+eventfilter"]["events"] > 0
    assert set(ami["call,user+eventfilter"]["by_event"]) <= CallTracker().subscribed
    assert data["pyvoip_probe"]["threads"] > 0
    assert pbx.channels() == []


@pytest.mark.timeout(300)
def test_web_smoke(tmp_path: Path) -> None:
    data = run_bench("web", tmp_path / "web.json", "--no-pbx")
    sizes = [run["callbacks"] for run in data["worklist"]]
    assert sizes == [1000, 2000]
    for run in data["worklist"]:
        assert run["rows_shown"] == 100 and run["colleague"]["n"] > 0 and run["supervisor"]["n"] > 0


@pytest.mark.timeout(300)
def test_ha_smoke(tmp_path: Path) -> None:
    data = run_bench("ha", tmp_path / "ha.json")
    assert len(data["takeover_seconds"]) == data["kills"] == 2
    assert all(0 < t < data["summary"]["takeover"]["bound_s"] for t in data["takeover_seconds"])
    assert {run["ha"] for run in data["runs"]} == {"off", "on"}
    for run in data["runs"]:
        assert run["unanswered"] == 0, "the active node acted on every hotkey"
        assert run["redirects_per_hotkey"] == [1]
