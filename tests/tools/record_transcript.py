"""Record AMI transcripts from the lab PBX for the unit tests' fixtures.

    .venv/bin/python -m tests.tools.record_transcript

Logs in twice: as ``labtest`` with every event class (what a busy PBX sends) and as
``callwarden`` with the daemon's own login mask, then places a real call: caller1 dials the
service number, agent1 answers, presses 5 (an ordinary digit) and *1 (the warn hotkey),
the caller hangs up. Both raw byte streams go to tests/fixtures/ami/.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.sip.phone import LAB_PORT_OFFSET, TestPhone

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"


class Recorder(threading.Thread):
    def __init__(self, username: str, secret: str, events: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", 15038 + LAB_PORT_OFFSET))
        self.data = bytearray()
        login = f"Action: Login\r\nUsername: {username}\r\nSecret: {secret}\r\nEvents: {events}\r\n\r\n"
        self.sock.sendall(login.encode())
        self.running = True

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while self.running:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.data += chunk

    def stop(self) -> bytes:
        self.running = False
        self.join()
        self.sock.close()
        return bytes(self.data)


SCENARIOS = {
    # name: (caller endpoint, service number, agent endpoint)
    "hotkey_call": ("caller1", "100", "agent1"),
    "hotkey_call_umlaut": ("caller2", "101", "agent2"),  # caller name "Jürgen Müßig"
}


def record(name: str, caller_endpoint: str, number: str, agent_endpoint: str) -> None:
    full = Recorder("labtest", "labtest-secret", "on")
    daemon_view = Recorder("callwarden", "callwarden-lab-secret", "call,user")
    full.start()
    daemon_view.start()
    caller = TestPhone(caller_endpoint, rtp_base=30200).start()
    agent = TestPhone(agent_endpoint, rtp_base=30300, auto_answer=True).start()
    try:
        call = caller.call(number)
        answered = agent.next_call(10)
        call.wait_answered(10)
        time.sleep(0.5)
        answered.press("5")
        answered.press("*1")
        time.sleep(1.5)
        call.hangup()
        answered.wait_ended(5)
        time.sleep(0.5)
    finally:
        caller.stop()
        agent.stop()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}_all_events.ami").write_bytes(full.stop())
    (FIXTURES / f"{name}_daemon_mask.ami").write_bytes(daemon_view.stop())
    print(f"{name}: written to", FIXTURES)


def main() -> None:
    for name, scenario in SCENARIOS.items():
        record(name, *scenario)


if __name__ == "__main__":
    main()
