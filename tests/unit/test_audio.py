"""tests/audio.py against the real shipped prompts (prompts/, scripts/build-prompts).

A test phone receives G.711 (mu-law or A-law); here that path is simulated with audioop: the
prompt at a random gain (+-6 dB), at a random offset in silence, with noise, encoded and decoded.
"""

from __future__ import annotations

import audioop
import wave
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from callwarden.pbx_files import PROMPTS
from tests.audio import (
    RATE,
    THRESHOLD,
    best_match,
    correlate,
    find_prompt,
    has_audio,
    load_prompt,
    prompt_path,
    speech_energy,
)

NAMES = list(PROMPTS)  # every announcement the dialplan plays
LANGS = ["en", "de"]
NOISE_RMS = 32768 * 10 ** (-45 / 20)  # -45 dBFS white noise: a quiet line, some 20 dB below speech
CODECS = {
    "ulaw": (audioop.lin2ulaw, audioop.ulaw2lin),
    "alaw": (audioop.lin2alaw, audioop.alaw2lin),
}


@cache
def prompt(lang: str, name: str) -> npt.NDArray[np.int16]:
    return load_prompt(prompt_path(lang, name))


def g711(samples: npt.ArrayLike, codec: str) -> bytes:
    """What a phone receives when these samples are sent to it as G.711."""
    encode, decode = CODECS[codec]
    linear = np.clip(np.round(np.asarray(samples, dtype=np.float64)), -32768, 32767).astype("<i2").tobytes()
    return bytes(decode(encode(linear, 2), 2))


def on_the_line(
    rng: np.random.Generator, samples: npt.ArrayLike, *, lead_s: float, trail_s: float, gain_db: float = 0.0
) -> npt.NDArray[np.float64]:
    """Samples at a gain, between stretches of silence, with noise (before G.711)."""
    x = np.asarray(samples, dtype=np.float64) * 10 ** (gain_db / 20)
    x = np.concatenate([np.zeros(round(lead_s * RATE)), x, np.zeros(round(trail_s * RATE))])
    return x + rng.normal(0.0, NOISE_RMS, x.size)


def test_every_prompt_file_is_8khz_mono_16bit_normalised_and_padded() -> None:
    for lang in LANGS:
        for name in NAMES:
            path = prompt_path(lang, name)
            with wave.open(str(path), "rb") as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getcomptype()) == (
                    8000,
                    1,
                    2,
                    "NONE",
                ), path
            samples = prompt(lang, name).astype(np.int32)
            peak_dbfs = 20 * np.log10(np.abs(samples).max() / 32768)
            assert -3.5 < peak_dbfs < -2.5, path
            pad = round(0.15 * RATE)
            assert not samples[: pad - 8].any() and not samples[-pad + 8 :].any(), f"{path}: 150 ms silence each end"
            assert samples[pad : pad + 80].any(), f"{path}: speech right after the leading silence"


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", NAMES)
def test_prompt_is_found_in_its_own_g711_round_trip(name: str, lang: str, codec: str) -> None:
    rng = np.random.default_rng([NAMES.index(name), LANGS.index(lang), len(codec)])
    lead_s = float(rng.uniform(0.0, 4.0))
    gain_db = float(rng.uniform(-6.0, 6.0))
    received = g711(
        on_the_line(rng, prompt(lang, name), lead_s=lead_s, trail_s=float(rng.uniform(0, 2)), gain_db=gain_db), codec
    )

    offset = find_prompt(received, prompt(lang, name), threshold=0.95)  # measured: >= 0.968 at -40 dBFS noise

    assert offset is not None, f"not found (best: {best_match(received, prompt(lang, name))}, gain {gain_db:+.1f} dB)"
    assert offset == pytest.approx(lead_s, abs=0.002)


@cache
def all_prompts_on_the_line(lang: str) -> tuple[bytes, tuple[tuple[int, int, str], ...]]:
    """Every prompt of a language one after another, each through G.711 (alternating laws) with
    noise and 0.3 s of silence around it; and (first sample, end sample, name) of each part."""
    rng = np.random.default_rng([LANGS.index(lang), 99])
    parts: list[bytes] = []
    spans: list[tuple[int, int, str]] = []
    position = 0
    for i, name in enumerate(NAMES):
        part = g711(on_the_line(rng, prompt(lang, name), lead_s=0.3, trail_s=0.3), "ulaw" if i % 2 else "alaw")
        parts.append(part)
        spans.append((position, position + len(part) // 2, name))
        position += len(part) // 2
    return b"".join(parts), tuple(spans)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", NAMES)
def test_prompt_is_not_found_in_any_other_prompts_audio(name: str, lang: str) -> None:
    """All pairs at once: the prompt is searched in every other prompt's audio, including the
    windows that straddle two of them; only windows that overlap the prompt's own part are left
    out (and there it must be found, at the right place)."""
    received, spans = all_prompts_on_the_line(lang)
    r, lead = correlate(received, prompt(lang, name))
    own_start, own_end, _ = next(span for span in spans if span[2] == name)
    template_len = len(received) // 2 - r.size + 1
    others = r.copy()
    others[max(0, own_start - template_len + 1) : own_end] = -1.0  # windows overlapping its own part

    k = int(np.argmax(others))
    where = next(other for start, _, other in reversed(spans) if start <= k)
    assert others[k] < THRESHOLD, f"{lang}/{name} matched {others[k]:.3f} in {lang}/{where}"
    own = int(np.argmax(r))
    assert r[own] >= THRESHOLD
    assert (own - lead) / RATE == pytest.approx((own_start + round(0.3 * RATE)) / RATE, abs=0.002)


def test_warn_and_end_are_told_apart_both_ways() -> None:
    """The example from the brief, explicitly: similar length, same voice, same call."""
    rng = np.random.default_rng(7)
    for lang in LANGS:
        warn = g711(on_the_line(rng, prompt(lang, "warn"), lead_s=1.0, trail_s=1.0), "ulaw")
        end = g711(on_the_line(rng, prompt(lang, "end"), lead_s=1.0, trail_s=1.0), "alaw")
        assert find_prompt(warn, prompt(lang, "end")) is None
        assert find_prompt(end, prompt(lang, "warn")) is None
        assert find_prompt(warn, prompt(lang, "warn")) == pytest.approx(1.0, abs=0.002)
        assert find_prompt(end, prompt(lang, "end")) == pytest.approx(1.0, abs=0.002)


def test_silence_noise_and_short_audio_give_none() -> None:
    rng = np.random.default_rng(3)
    warn = prompt("en", "warn")
    assert find_prompt(b"", warn) is None
    assert find_prompt(bytes(2 * 10 * RATE), warn) is None  # 10 s of digital silence
    assert find_prompt(g711(np.zeros(10 * RATE), "ulaw"), warn) is None
    assert find_prompt(g711(rng.normal(0.0, NOISE_RMS, 10 * RATE), "alaw"), warn) is None
    assert find_prompt(g711(rng.normal(0.0, 3000.0, 10 * RATE), "ulaw"), warn) is None  # loud noise
    # Half of the prompt is not the prompt.
    assert find_prompt(g711(warn[: warn.size // 2], "ulaw"), warn) is None


def test_a_prompt_among_other_audio_is_found_at_its_offset() -> None:
    rng = np.random.default_rng(5)
    line = np.concatenate(
        [
            on_the_line(rng, prompt("de", "handover"), lead_s=0.5, trail_s=0.2),
            on_the_line(rng, prompt("de", "warn"), lead_s=0.0, trail_s=0.0, gain_db=-6),
            on_the_line(rng, prompt("de", "end"), lead_s=0.7, trail_s=0.5),
        ]
    )
    received = g711(line, "alaw")
    warn_at = (round(0.5 * RATE) + prompt("de", "handover").size + round(0.2 * RATE)) / RATE
    end_at = warn_at + (prompt("de", "warn").size + round(0.7 * RATE)) / RATE
    assert find_prompt(received, prompt("de", "warn")) == pytest.approx(warn_at, abs=0.002)
    assert find_prompt(received, prompt("de", "end")) == pytest.approx(end_at, abs=0.002)
    assert find_prompt(received, prompt("en", "warn")) is None  # the other language


def test_speech_energy_and_has_audio() -> None:
    rng = np.random.default_rng(11)
    warn = prompt("en", "warn")
    received = g711(on_the_line(rng, warn, lead_s=2.0, trail_s=2.0), "ulaw")
    speech_s = warn.size / RATE
    assert has_audio(received, 2.3, 2.0 + speech_s - 0.3)
    assert not has_audio(received, 0.0, 1.9)
    assert not has_audio(received, 2.0 + speech_s + 0.1, None)
    assert speech_energy(received, 2.0, 2.0 + speech_s) > 0.03  # speech: about -21 dBFS RMS
    assert speech_energy(received, 0.0, 1.9) == pytest.approx(NOISE_RMS / 32768, rel=0.5)
    assert speech_energy(received, 100.0, 200.0) == 0.0  # past the end
    assert speech_energy(b"", 0.0, 1.0) == 0.0

    t = np.arange(RATE) / RATE
    tone = (16384 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()
    assert speech_energy(tone, 0.0, 1.0) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_load_prompt_refuses_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "wideband.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(3200))
    with pytest.raises(ValueError, match="need 8000 Hz"):
        load_prompt(path)
