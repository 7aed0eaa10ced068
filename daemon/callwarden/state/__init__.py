"""Call state: AMI events in, domain events out (no I/O: the import contract in pyproject.toml)."""
