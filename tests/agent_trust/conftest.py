"""Fixtures: the agent fixtures of tests/agent, and a hand to sign manifests as anyone."""

from __future__ import annotations

from tests.agent.conftest import (  # noqa: F401 - fixtures, registered by import
    enrolled,
    env,
    make_agent,
    push,
    transport,
    wine_example,
    wine_v2_bytes,
)
