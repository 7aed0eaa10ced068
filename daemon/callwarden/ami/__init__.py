"""Asterisk Manager Interface: pure framing (framing.py) and the connection (client.py)."""
