"""Real parts for the integration tests: the lab PBX, Mosquitto, the daemon as a process."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callwarden.records import AuditRecord, Callback
from callwarden.store import Store

REPO = Path(__file__).resolve().parents[2]
LAB_PBX = REPO / "scripts" / "lab-pbx"

LogRecord = dict[str, Any]


AMI_PORT = 15038 + int(os.environ.get("CALLWARDEN_LAB_PORT_OFFSET", "0"))  # scripts/lab-pbx
LAB_LOCK = Path(os.environ.get("CALLWARDEN_LAB_DIR", "/var/lib/callwarden-lab")) / "tests.lock"


@contextlib.contextmanager
def exclusive_lab() -> Iterator[None]:
    """One test session, soak or benchmark at a time drives the lab PBX: its ports and
    endpoints are shared, so a second run on the same machine waits here instead of colliding."""
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LAB_LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LAB_LOCK}: another run uses the lab PBX", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LabPbx:
    """scripts/lab-pbx, driven from the tests. Any failure is an error, never a skip."""

    def _run(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(LAB_PBX), *args], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/lab-pbx {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self._run("start")

    def running(self) -> bool:
        return subprocess.run([str(LAB_PBX), "status"], capture_output=True, check=False).returncode == 0

    def stop(self) -> None:
        self._run("stop")

    def cli(self, command: str) -> str:
        return self._run("cli", command, timeout=30)

    def channel_info(self, channel: str) -> dict[str, str]:
        """``core show channel`` as a dict (``LinkedID``, ``Caller ID`` ...)."""
        info: dict[str, str] = {}
        for line in self.cli(f"core show channel {channel}").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info.setdefault(key.strip(), value.strip())
        return info

    def bridges(self) -> list[list[str]]:
        """The channels of every bridge Asterisk has now (``bridge show all`` / ``bridge show ID``)."""
        ids = re.findall(r"^([0-9a-f-]{36}) ", self.cli("bridge show all"), flags=re.MULTILINE)
        found = []
        for bridge_id in ids:
            detail = self.cli(f"bridge show {bridge_id}")
            found.append(re.findall(r"Channel:\s*(\S+)", detail))
        return found

    def bridged(self, *endpoints: str) -> bool:
        """True when one bridge holds a channel of each of these endpoints."""
        return any(
            all(any(c.startswith(f"PJSIP/{e}-") for c in channels) for e in endpoints) for channels in self.bridges()
        )

    def hotkey_token(self) -> str:
        """The token the daemon set for the dialplan's hotkey events (a PBX global)."""
        match = re.search(r"CALLWARDEN_HOTKEY_TOKEN=(\S+)", self.cli("dialplan show globals"))
        if match is None:
            raise AssertionError("no CALLWARDEN_HOTKEY_TOKEN on the PBX: is a daemon logged in?")
        return match.group(1)

    def inject_hotkey(self, headers: dict[str, str]) -> None:
        """A CallwardenHotkey event as the dialplan raises it (token included), injected through
        the test AMI user; the headers say which channel, Uniqueid... it claims."""
        ami_action(
            {
                "Action": "UserEvent",
                "UserEvent": "CallwardenHotkey",
                "Leg": "agent",
                "Token": self.hotkey_token(),
                **headers,
            }
        )

    def channels(self) -> list[str]:
        out = self.cli("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]


def terminate(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within ``grace`` seconds."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before opening port {port}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} not open after {timeout}s") from None
            time.sleep(0.05)


class Mosquitto:
    """A Mosquitto broker (Debian package) on a free loopback port; stop and start keep the port
    and (with ``persistence``) the subscribers' sessions."""

    def __init__(self, workdir: Path, *, persistence: bool = False) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/setup (apt-get install mosquitto)")
        self.port = free_tcp_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # Run as root (CI), Mosquitto would switch to the user "mosquitto", which cannot write
        # into the test's directory: no log and, worse, no persistence (sessions lost on a
        # restart, so a test of it passed only when its subscriber beat the publisher).
        stay = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{stay}"
            f"persistence {'true' if persistence else 'false'}\npersistence_location {workdir}/\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        terminate(self.proc, 5)
        self.proc = None


class PostgresServer:
    """A throwaway PostgreSQL cluster (Debian package) on a free loopback port.

    Run as the ``postgres`` system user (PostgreSQL refuses root) in a directory of its own;
    trust authentication on 127.0.0.1 only, no fsync (a test database). ``database()`` makes a
    fresh, empty database per test and returns its URL.
    """

    def __init__(self) -> None:
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bindirs:
            raise RuntimeError("PostgreSQL is not installed: run scripts/setup (apt-get install postgresql)")
        self.bin = bindirs[-1].parent
        self.port = free_tcp_port()
        self.dir = Path(tempfile.mkdtemp(prefix="callwarden-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.dir / "data"), "-U", "callwarden", "--auth=trust", "-E", "UTF8")
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()
        self._count = 0

    def _start(self) -> None:
        options = ["-p", str(self.port), "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(self.bin / "postgres"), "-D", str(self.dir / "data"), *options],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "server.log").open("ab"),
        )
        wait_for_port(self.port, 20, self.proc)
        # The port opens before the server takes connections ("the database system is starting
        # up": it failed a clean-clone run once): ready is what pg_isready says.
        ready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "callwarden"]
        deadline = time.monotonic() + 20
        while subprocess.run(ready, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not get ready (see {self.dir / 'server.log'})")
            time.sleep(0.05)

    def restart(self) -> None:
        """A fast shutdown (clients are disconnected, committed data kept), then start."""
        assert self.proc is not None
        self._as_postgres("pg_ctl", "stop", "-D", str(self.dir / "data"), "-m", "fast", "-w")
        self.proc.wait(20)
        self._start()

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args], check=True, capture_output=True
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://callwarden@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg  # noqa: PLC0415 (only the PostgreSQL tests need it)

        self._count += 1
        name = f"test_{os.getpid()}_{self._count}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=callwarden dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        terminate(self.proc, 10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class DaemonProcess:
    """``callwarden run`` as a real process; its JSON log lines are the test oracle."""

    config_path: Path
    proc: subprocess.Popen[str] = field(init=False)
    records: list[LogRecord] = field(default_factory=list)
    _queue: queue.Queue[LogRecord | None] = field(default_factory=queue.Queue)
    _returned: set[int] = field(default_factory=set)
    raw_lines: list[str] = field(default_factory=list)

    def start(self) -> DaemonProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callwarden", "run", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True, name="daemon-log-reader").start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            self._queue.put(record)
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 15, where: Callable[[LogRecord], bool] | None = None) -> LogRecord:
        """The first log record named ``event`` (matching ``where``) not returned before,
        waiting for it if need be: records read while waiting for another stay available."""
        deadline = time.monotonic() + timeout
        while True:
            for index, record in enumerate(self.records):
                if index in self._returned or record.get("event") != event:
                    continue
                if where is None or where(record):
                    self._returned.add(index)
                    return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"daemon logged no {event!r} within {timeout}s; log:\n{self.tail()}")
            try:
                record = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if record is None:
                self._queue.put(None)
                raise RuntimeError(f"daemon exited ({self.proc.poll()}) before logging {event!r}:\n{self.tail()}")
            self.records.append(record)

    def forget(self) -> None:
        """Drop the records read so far (long runs: the soak)."""
        self.records.clear()
        self._returned.clear()
        self.raw_lines.clear()

    def tail(self, lines: int = 40) -> str:
        return "".join(self.raw_lines[-lines:])

    def events(self, name: str) -> list[LogRecord]:
        """Records named ``name`` seen so far (drains what has arrived)."""
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            if record is None:
                self._queue.put(None)
                break
            self.records.append(record)
        return [r for r in self.records if r.get("event") == name]

    def terminate(self, timeout: float = 2.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    lines: list[str] = []
    merged: dict[str, dict[str, Any]] = {"log": {"format": "json", "level": "debug"}}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    for name, values in merged.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ami_action(action: dict[str, str]) -> None:
    """Send one action as the lab's test AMI user and check it succeeded."""

    async def send() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", AMI_PORT)
        lines = ["Action: Login", "Username: labtest", "Secret: labtest-secret", "Events: off", ""]
        lines += [*[f"{k}: {v}" for k, v in action.items()], ""]
        writer.write(("\r\n".join(lines) + "\r\n").encode())
        await writer.drain()
        data = b""
        while data.count(b"Response:") < 2:
            data += await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        assert data.count(b"Response: Success") == 2, data

    asyncio.run(send())


class TcpProxy:
    """A loopback TCP relay to a port that can go silent: ``blackhole()`` stops forwarding on the
    open connections without closing them (a half-open link); new connections relay normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            silent = threading.Event()
            self._pairs.append((client, upstream, silent))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, silent), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, silent: threading.Event) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if silent.is_set():
                continue  # swallowed: the link looks alive to both ends, nothing gets through
            try:
                dst.sendall(data)
            except OSError:
                return

    def blackhole(self) -> None:
        for _, _, silent in self._pairs:
            silent.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for client, upstream, _ in self._pairs:
            client.close()
            upstream.close()


def stored_audit(path: Path | str, linkedid: str | None = None) -> list[AuditRecord]:
    """The daemon's audit trail as committed in its store (oldest first): a file or a URL."""
    with Store.open(str(path)) as store:
        return store.list_audit(linkedid=linkedid)


def stored_callbacks(path: Path) -> list[Callback]:
    """The callbacks committed in the daemon's store (newest first)."""
    with Store.open(str(path)) as store:
        return store.list_callbacks()


def fetch(port: int, path: str) -> tuple[int, str]:
    """GET from the daemon's HTTP server: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float:
    """A sample's value in a /metrics text (``name`` with its labels, as printed)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
