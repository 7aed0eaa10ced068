"""AMI framing as pure functions: bytes in, frames out; actions in, bytes out.

No sockets here, so every rule is unit-tested with plain data:

* bytes are decoded incrementally, so a multibyte UTF-8 character split across two TCP reads
  arrives intact (panoramisk 1.4 decodes each read on its own and drops such characters);
* frames end at a blank line (``\\r\\n\\r\\n``); a frame that grows past ``max_frame`` without
  ending is dropped up to its end, and reported, instead of growing memory without bound (so
  is a greeting line that never ends);
* a value that would break out of its header line (CR, LF, NUL) never reaches an action, and a
  ``Channel`` can never be a regular expression (``/.../`` selects every matching channel).
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field

Frame = dict[str, str]

FRAME_END = "\r\n\r\n"
GREETING_PREFIX = "Asterisk Call Manager/"
DEFAULT_MAX_FRAME = 64 * 1024
MAX_GREETING = 256  # "Asterisk Call Manager/11.0.0" plus room; longer is no greeting
_FORBIDDEN = ("\r", "\n", "\x00")
# Headers whose value names a channel: a leading "/" would make Hangup and friends match by regex.
CHANNEL_HEADERS = frozenset({"channel", "extrachannel", "channel1", "channel2", "transferer"})


# Headers no genuine Asterisk event repeats: which event, which channel, which call.
IDENTITY_HEADERS = frozenset(
    {
        "Event",
        "Response",
        "ActionID",
        "Channel",
        "Uniqueid",
        "Linkedid",
        "UserEvent",
        "Hotkey",
        "BridgePeer",
        "BridgeUniqueid",
        "CallerIDNum",
        "CallerIDName",
        "ConnectedLineNum",
        "ConnectedLineName",
        "Context",
        "Exten",
    }
)
# Added by parse_frame to a frame that repeats one of them; no AMI header has this name.
TAMPERED_HEADER = "X-Callwarden-Tampered"


class UnsafeActionError(ValueError):
    """An action carries a value that could inject headers or select other channels."""


def parse_frame(text: str) -> Frame:
    """Parse one frame (without its terminating blank line) into a header dict.

    ``Key: Value`` lines only; the first occurrence of a repeated key wins. Lines without
    ``": "`` (garbage, command output) are ignored: the caller decides whether a frame without
    ``Event``/``Response`` is of any use.

    Asterisk never repeats a header that names the event or a channel (:data:`IDENTITY_HEADERS`),
    but it copies some caller-controlled values into events unescaped (the caller ID number,
    the dialed extension): a CR LF there adds headers of the caller's choosing. A frame that
    repeats an identity header is marked with :data:`TAMPERED_HEADER` (the repeated names), so
    consumers can drop it instead of trusting whichever copy came first.
    """
    frame: Frame = {}
    repeated: list[str] = []
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            # "Key:" with an empty value is legal AMI.
            if line.endswith(":") and " " not in line:
                key, value = line[:-1], ""
            else:
                continue
        if key not in frame:
            frame[key] = value
        elif key in IDENTITY_HEADERS and key not in repeated:
            repeated.append(key)
    if repeated:
        frame[TAMPERED_HEADER] = ",".join(repeated)
    return frame


@dataclass(slots=True)
class FrameDecoder:
    """Incremental AMI stream decoder: ``feed(bytes)`` returns the complete frames' texts.

    Returns raw frame texts (not dicts) so the caller can route by a cheap prefix check and
    hand responses to another parser; use :func:`parse_frame` for the headers.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    version: str | None = None
    dropped: int = 0
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _buffer: str = ""
    _discarding: bool = False
    _greeted: bool = False

    def feed(self, data: bytes) -> list[str]:
        buffer = self._buffer + self._decoder.decode(data)
        if not self._greeted:
            if len(buffer) < len(GREETING_PREFIX) and GREETING_PREFIX.startswith(buffer):
                self._buffer = buffer
                return []
            self._greeted = True
            if buffer.startswith(GREETING_PREFIX):
                line, sep, rest = buffer.partition("\r\n")
                if sep and len(line) <= MAX_GREETING:
                    self.version = line[len(GREETING_PREFIX) :].strip()
                    buffer = rest
                elif len(buffer) <= MAX_GREETING:
                    self._greeted = False  # the greeting line has not ended yet
                    self._buffer = buffer
                    return []
                # else: a "greeting" that never ends is no greeting; it is framed (and
                # dropped as oversized) like any other data.
        if self._discarding:
            end = buffer.find(FRAME_END)
            if end < 0:
                # Keep only a tail that could hold the start of the terminator.
                self._buffer = buffer[-3:]
                return []
            self._discarding = False
            buffer = buffer[end + len(FRAME_END) :]
        parts = buffer.split(FRAME_END)
        rest = parts.pop()
        if len(rest) > self.max_frame:
            self.dropped += 1
            self._discarding = True
            rest = rest[-3:]
        self._buffer = rest
        frames = []
        for part in parts:
            if len(part) > self.max_frame:
                self.dropped += 1
                continue
            text = part.strip("\r\n")
            if text:
                frames.append(text)
        return frames

    @property
    def buffered(self) -> int:
        """Characters held back for the end of a frame: at most ``max(max_frame, MAX_GREETING)``."""
        return len(self._buffer)


def check_value(key: str, value: str) -> None:
    """Raise :class:`UnsafeActionError` if ``value`` must not go into header ``key``."""
    if any(c in value for c in _FORBIDDEN):
        raise UnsafeActionError(f"AMI header {key!r}: value contains CR, LF or NUL")
    if key.lower() in CHANNEL_HEADERS and (not value or value.startswith("/")):
        raise UnsafeActionError(f"AMI header {key!r}: a channel name must be non-empty and not a regex")


def check_action(action: Mapping[str, str | list[str]]) -> None:
    """Check every key and value of an action before it is sent."""
    if "Action" not in action:
        raise UnsafeActionError("AMI action without 'Action' header")
    for key, value in action.items():
        if not key or any(c in key for c in (*_FORBIDDEN, ":", " ")):
            raise UnsafeActionError(f"AMI header name {key!r} is not a plain token")
        for item in value if isinstance(value, list) else [value]:
            check_value(key, item)


def encode_action(action: Mapping[str, str | list[str]]) -> bytes:
    """Checked wire form of an action (``Key: Value`` lines, blank line at the end)."""
    check_action(action)
    lines = []
    for key, value in action.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key}: {item}")
    return ("\r\n".join(lines) + FRAME_END).encode("utf-8")
