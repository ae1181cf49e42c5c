"""Fixtures: a hand to sign manifests as anyone (the agent fixtures come from tests/support)."""

from __future__ import annotations
