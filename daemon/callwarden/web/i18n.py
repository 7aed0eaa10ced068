"""English and German messages: one flat TOML catalog per language (``messages/*.toml``)."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable
from importlib import resources

LANGUAGES = ("en", "de")


@functools.cache
def catalog(language: str) -> dict[str, str]:
    text = resources.files("callwarden.web").joinpath("messages", f"{language}.toml").read_text(encoding="utf-8")
    return {key: str(value) for key, value in tomllib.loads(text).items()}


class Translator:
    """``t("key", name=value)``; a key missing in German falls back to English, then to itself."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"
        self._messages = catalog(self.language)
        self._fallback = catalog("en")

    def __call__(self, key: str, **values: object) -> str:
        text = self._messages.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text


def pick_language(accept_language: str | None, default: str = "en") -> str:
    """The first supported language of an ``Accept-Language`` header (quality order)."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.split("-")[0].lower()))
    return next((tag for _, _, tag in sorted(ranked) if tag in LANGUAGES), default)


def missing_keys(languages: Iterable[str] = LANGUAGES) -> dict[str, set[str]]:
    """Keys of the English catalog that another language lacks (a unit test keeps this empty)."""
    english = set(catalog("en"))
    return {lang: english - set(catalog(lang)) for lang in languages if english - set(catalog(lang))}
