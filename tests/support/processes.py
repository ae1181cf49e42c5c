"""Real `tether` processes for the tests: the same classes `make cluster` starts."""

from scripts.cluster.processes import TETHER, ServerProcess, free_port, wait_until_ready

__all__ = ["TETHER", "ServerProcess", "free_port", "wait_until_ready"]
