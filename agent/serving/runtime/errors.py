"""The errors the model runtime raises, as one small tree.

RuntimeFailure
 ├── UnsupportedFormat   the artifact format has no loader
 ├── LoadFailed          the file could not be turned into a usable model
 │    └── UntrustedTypes a skops file holds types outside the allow-list
 ├── SmokeTestFailed     the model's output on its input example is wrong
 ├── InvalidInput        request rows break the input schema (never reach the model)
 │    └── BatchTooLarge  more rows than the configured limit
 ├── ModelNotFound       no model of that name is loaded
 └── PredictFailed       the model raised on input that passed validation
"""

from __future__ import annotations

from agent.errors import AgentError


class RuntimeFailure(AgentError):
    """Base of the model runtime's errors."""


class UnsupportedFormat(RuntimeFailure):
    """The artifact's format has no loader."""


class LoadFailed(RuntimeFailure):
    """The artifact could not be loaded into a usable model."""


class UntrustedTypes(LoadFailed):
    """A skops artifact holds types outside the allow-list."""

    def __init__(self, message: str, types: list[str]) -> None:
        super().__init__(message)
        self.types = types


class SmokeTestFailed(RuntimeFailure):
    """The model's output on its input example is wrong."""


class InvalidInput(RuntimeFailure):
    """Request rows break the input schema."""


class BatchTooLarge(InvalidInput):
    """A batch has more rows than the configured limit."""


class ModelNotFound(RuntimeFailure):
    """No model of that name is loaded."""


class PredictFailed(RuntimeFailure):
    """The model raised on rows that passed validation."""
