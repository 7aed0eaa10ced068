"""Callwarden: one key press on the agent's deskphone to warn, end or hand over an abusive call."""

__version__ = "0.1.0"
