"""The daemon's and the CLI's exit codes (sysexits where one fits)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    STORE = 74  # sysexits EX_IOERR: the store cannot be opened
    AMI_LOGIN_REFUSED = 77  # sysexits EX_NOPERM
    CONFIG = 78  # sysexits EX_CONFIG
