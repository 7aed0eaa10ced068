"""Recorded AMI transcripts of the lab PBX (tests/tools/record_transcript.py)."""

from __future__ import annotations

from pathlib import Path

from callwarden.ami.framing import Frame, FrameDecoder, parse_frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"


def transcript(name: str) -> bytes:
    return (FIXTURES / f"{name}.ami").read_bytes()


def frames_of(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    """Decode ``data`` fed in pieces of the given sizes (the rest in one piece)."""
    decoder = FrameDecoder()
    texts: list[str] = []
    pos = 0
    for size in chunks or []:
        texts += decoder.feed(data[pos : pos + size])
        pos += size
    texts += decoder.feed(data[pos:])
    return [parse_frame(text) for text in texts]
