"""Benchmarks (issue 6): AMI ingestion, hotkey latency under load, end to end on the lab PBX.

Run all of them with ``bench/run``; each one alone with ``.venv/bin/python -m bench.<name>``
(``--smoke`` for a tiny version). See docs/benchmarks.md.
"""
