"""Web users: names, roles, password hashes (argon2id) and the lockout rule. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from callwarden.web.config import ROLES, Role

NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")  # as the policy's names (teams, agents)
# The user's own phone as a dial target (click-to-call rings it first), as the policy's targets.
PHONE = re.compile(r"^(PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.@+-]{1,80}$")
MIN_PASSWORD = 10
LANGUAGES = ("en", "de")

_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters


class UserError(ValueError):
    """A user's field is invalid; the message names it."""


@dataclass(frozen=True, kw_only=True)
class WebUser:
    id: int
    username: str
    role: Role
    team: str | None
    phone: str | None
    language: str
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    session_epoch: int
    created: datetime

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "admin")

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def check_username(name: str) -> str:
    if not NAME.match(name):
        raise UserError(f"username {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ + -")
    return name


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")


def check_team(team: str | None, known: frozenset[str] | None = None) -> str | None:
    if team is None:
        return None
    if not NAME.match(team):
        raise UserError(f"team {team!r}: use A-Z a-z 0-9 _ . @ + -")
    if known is not None and team not in known:
        raise UserError(f"team {team!r} is no hand-over route's team in the policy ({', '.join(sorted(known))})")
    return team


def check_phone(phone: str | None) -> str | None:
    if phone is not None and not PHONE.match(phone):
        raise UserError(f"phone {phone!r}: a dial target like PJSIP/colleague1")
    return phone


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise UserError(f"language {language!r}: one of {', '.join(LANGUAGES)}")
    return language


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def rehash(password: str) -> str:
    """A new hash of a password that just verified (the library's parameters changed)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# A hash to verify against when the user does not exist: the answer takes as long either way.
DUMMY_HASH = _hasher.hash("callwarden-no-such-user")


def lockout_after_failure(
    failed_before: int, now: datetime, *, max_failed: int, minutes: int
) -> tuple[int, datetime | None]:
    """(failed_logins, locked_until) after one more wrong password: the N-th in a row locks the
    account for ``minutes`` and starts the count anew."""
    failed = failed_before + 1
    if failed >= max_failed:
        return 0, now + timedelta(minutes=minutes)
    return failed, None
