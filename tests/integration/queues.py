"""The lab PBX's queues that ring agent1 (config/asterisk/queues.conf), and a call to one of them
(the ``queue_call`` fixture, tests/integration/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.sip.phone import PhoneCall

# number -> queue: the member is the phone (110), a Local channel that stays (111, /n), one that
# optimizes away (112), the FreePBX-shaped path (113, Local/201@from-queue/n).
QUEUES = {"110": "lab-queue-pjsip", "111": "lab-queue-local", "112": "lab-queue-local-opt", "113": "lab-queue-freepbx"}


@dataclass
class QueueCall:
    caller: PhoneCall
    agent: PhoneCall
    queue: str  # the queue's name
