"""Settings for every test."""

from __future__ import annotations

from hypothesis import settings

# No property test has a time limit per example (hypothesis's default is 200 ms): speed is
# measured by bench/, never asserted in tests, and a busy CI machine must not fail one.
settings.register_profile("callwarden", deadline=None)
settings.load_profile("callwarden")
