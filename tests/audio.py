"""What did a test phone hear? Find an announcement in received audio; measure audio levels.

Received audio is what :meth:`tests.sip.phone.PhoneCall.received_audio` returns: 16-bit signed
little-endian PCM, 8 kHz, mono. Prompts are the WAV files of ``prompts/<lang>/callwarden/``
(8 kHz, mono, 16-bit; scripts/build-prompts).

:func:`find_prompt` slides the prompt's speech over the received audio and computes, at every
sample offset, the normalised cross-correlation (Pearson's r between the prompt and the window
of received audio under it; numerator by FFT, window energies by cumulative sums). It does not
depend on the gain; G.711 (mu-law or A-law) costs about 0.0001 of it; noise lowers it by about
1/sqrt(1 + noise power/speech power). A different utterance, even in the same synthetic voice
and of the same length, does not line up sample by sample and scores far lower. Measured on the
shipped prompts (both G.711 laws, gain -6/0/+6 dB, white noise; tests/unit/test_audio.py
repeats the gist), best score of a prompt:

=========================================================  ===========  ===========
in the received audio of                                   en           de
=========================================================  ===========  ===========
itself, played by the lab PBX (Asterisk 22 Playback,      0.9999       0.9999
to a test phone, mu-law and A-law; offset exact)
itself, no noise (+6 dB clips: the minimum)                >= 0.996     >= 0.997
itself, noise -45 dBFS                                     >= 0.990     >= 0.991
itself, noise -40 dBFS                                     >= 0.968     >= 0.971
itself, noise -34 dBFS (gain -6 dB: SNR about 7 dB)        >= 0.888     >= 0.899
any other prompt (all pairs), except the next row          <= 0.339     <= 0.286
"timeout" in "handover": the same words, but said at the   0.715        0.779
end of a longer sentence (other prosody)
"end" in "warn" / "warn" in "end"                          0.05 / 0.05  0.07 / 0.05
=========================================================  ===========  ===========

:data:`THRESHOLD` (0.85) lies between: it still tells "timeout" from the end of "handover" and
leaves a margin against noise (the lab PBX adds none). Received audio is a concatenation of RTP
payloads in arrival order, so offsets count received audio, not wall-clock time (a channel that
has nothing to play may send no RTP: on the lab PBX, an answered call's received audio began
with the Playback's first sample), and one lost 20 ms packet in the middle of a prompt shifts
its second half: "warn" then scores about 0.6 (measured 0.58 en, 0.63 de). On loopback no packet
is lost.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
THRESHOLD = 0.85
"""Minimum normalised cross-correlation for :func:`find_prompt` to report a match."""

SILENCE_LEVEL = 30
"""Samples at or below this magnitude (16-bit units, about -60 dBFS) count as silence when the
prompt's own leading and trailing padding is trimmed off before matching."""

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

Signal = npt.NDArray[np.float64]


def prompt_path(lang: str, name: str) -> Path:
    """The shipped prompt file, e.g. ``prompt_path("de", "warn")``."""
    return PROMPTS_DIR / lang / "callwarden" / f"{name}.wav"


def load_prompt(path: str | Path) -> npt.NDArray[np.int16]:
    """Read an 8 kHz, mono, 16-bit PCM WAV file (the stdlib ``wave`` module) into int16 samples."""
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (RATE, 1, 2):
            raise ValueError(
                f"{path}: need {RATE} Hz, mono, 16-bit; got {wav.getframerate()} Hz, "
                f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
            )
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.int16)


def pcm(received: bytes) -> Signal:
    """16-bit signed little-endian PCM bytes as float samples (16-bit units)."""
    if len(received) % 2:
        received = received[:-1]
    return np.frombuffer(received, dtype="<i2").astype(np.float64)


def _speech(prompt: npt.ArrayLike) -> tuple[Signal, int]:
    """The prompt without its leading/trailing silence, and how many samples were cut in front."""
    samples = np.asarray(prompt, dtype=np.float64)
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL)
    if loud.size == 0:
        raise ValueError("the prompt is silent")
    return samples[loud[0] : loud[-1] + 1], int(loud[0])


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT lengths numpy transforms fast (a power of two can be
    up to twice as long)."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 << max(0, (n - 1) // power35).bit_length()  # times a power of two
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def correlate(received: bytes, prompt: npt.ArrayLike) -> tuple[Signal, int]:
    """Normalised cross-correlation of the prompt's speech with every window of the received
    audio: ``r[k]`` for the speech starting at sample k; and the samples trimmed off the
    prompt's start (so the prompt file itself starts at ``k - lead``). Empty if the received
    audio is shorter than the prompt's speech."""
    x = pcm(received)
    template, lead = _speech(prompt)
    m = template.size
    if x.size < m:
        return np.zeros(0), lead
    template = template - template.mean()
    template_norm = float(np.sqrt(np.dot(template, template)))

    size = _fast_length(x.size + m)
    spectrum = np.fft.rfft(x, size) * np.conj(np.fft.rfft(template, size))
    numerator = np.fft.irfft(spectrum, size)[: x.size - m + 1]

    # Energy of x around its window mean, for every window: sum(x^2) - sum(x)^2 / m.
    c1 = np.concatenate(([0.0], np.cumsum(x)))
    c2 = np.concatenate(([0.0], np.cumsum(x * x)))
    sums = c1[m:] - c1[:-m]
    energy = np.maximum(c2[m:] - c2[:-m] - sums * sums / m, 0.0)
    # Windows with (next to) nothing in them cannot match; skipping them also keeps FFT
    # rounding noise divided by a tiny norm from posing as a correlation.
    floor = m * SILENCE_LEVEL**2 / 100
    r = np.zeros_like(numerator)
    valid = energy > floor
    r[valid] = numerator[valid] / (np.sqrt(energy[valid]) * template_norm)
    return np.clip(r, -1.0, 1.0), lead


def best_match(received: bytes, prompt: npt.ArrayLike) -> tuple[float, float]:
    """(offset in seconds, score) of the best alignment of the prompt in the received audio,
    whether or not it passes :data:`THRESHOLD`; (0.0, 0.0) if the audio is too short."""
    r, lead = correlate(received, prompt)
    if r.size == 0:
        return 0.0, 0.0
    k = int(np.argmax(r))
    return max(0.0, (k - lead) / RATE), float(r[k])


def find_prompt(received: bytes, prompt: npt.ArrayLike, threshold: float = THRESHOLD) -> float | None:
    """Where the prompt starts in the received audio (seconds from its start, the prompt
    file's own leading silence included), or None if it is not in there."""
    offset, score = best_match(received, prompt)
    return offset if score >= threshold else None


def speech_energy(received: bytes, start_s: float = 0.0, end_s: float | None = None) -> float:
    """RMS of the received audio between two times (seconds; ``end_s=None``: to the end), as a
    fraction of full scale (1.0 = a full-scale square wave; -20 dBFS = 0.1). 0.0 if empty."""
    x = pcm(received)
    start = max(0, round(start_s * RATE))
    end = x.size if end_s is None else min(x.size, round(end_s * RATE))
    if end <= start:
        return 0.0
    window = x[start:end]
    return float(np.sqrt(np.mean(window * window))) / 32768.0


def has_audio(received: bytes, start_s: float = 0.0, end_s: float | None = None, threshold: float = 0.01) -> bool:
    """Did sound arrive between two times? The default threshold, RMS 0.01 (-40 dBFS), is far
    above G.711's quietest codes (+-8 of 32768, -72 dBFS) and a quiet line's hiss, and far below
    speech (the prompts: about -21 dBFS RMS, pauses included)."""
    return speech_energy(received, start_s, end_s) >= threshold
