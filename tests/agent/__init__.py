"""Tests of the agent's control half: client, state, cache, reconciler, poller, daemon, CLI."""
