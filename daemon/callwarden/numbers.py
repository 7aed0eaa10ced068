"""Caller numbers to E.164, with Google's libphonenumber rules (the phonenumbers package)."""

from __future__ import annotations

import functools

import phonenumbers

# Every channel is normalized when it enters a bridge (state/tracker.py), so that a hotkey
# never waits for libphonenumber (tens of microseconds a number). Most of those numbers recur
# (the agents' own, a queue's, repeat callers; a channel re-entering after hold or transfer):
# the recent ones are remembered. Bounded; the numbers are the calls' own, held in memory only.
RECENT_NUMBERS = 4096


def to_e164(raw: str | None, country_code: str = "49") -> str | None:
    """``030 1234567`` -> ``+49301234567`` (national numbers take ``country_code``).

    None when the number is withheld, malformed or not a valid number: a callback must
    not go to a number that cannot exist.
    """
    if not raw:
        return None
    return _to_e164(raw, country_code)


@functools.lru_cache(maxsize=RECENT_NUMBERS)
def _to_e164(raw: str, country_code: str) -> str | None:
    cleaned = raw.strip()
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    region = phonenumbers.region_code_for_country_code(int(country_code))
    try:
        parsed = phonenumbers.parse(cleaned, None if cleaned.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def dialplan_keys(e164: str) -> list[str]:
    """The digit strings the dialplan may see for this number in CALLERID(num), after
    FILTER(0-9): international (+49...), with 00 (0049...), and national (030...)."""
    parsed = phonenumbers.parse(e164, None)
    national = str(parsed.national_number)
    country = str(parsed.country_code)
    return sorted({country + national, "00" + country + national, "0" + national})
