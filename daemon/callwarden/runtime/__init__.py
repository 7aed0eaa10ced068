"""The running daemon: the event flow, recovery after a login, upkeep, and the composition root."""
