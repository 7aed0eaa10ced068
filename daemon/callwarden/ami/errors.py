"""The AMI connection's errors."""

from __future__ import annotations


class AmiError(Exception):
    pass


class AmiNotConnectedError(AmiError):
    """No logged-in AMI session to send on."""


class AmiConnectionLostError(AmiError):
    """The connection dropped before the action was answered; it was not replayed."""


class AmiLoginRefusedError(AmiError):
    """Asterisk refused the credentials: a configuration problem, not a network one."""
