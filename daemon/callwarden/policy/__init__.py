"""Policy: the supervisors' rules and the decisions made by them (no I/O: the import contract in
pyproject.toml)."""
