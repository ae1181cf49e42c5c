"""Tests of the operator CLI: `tether model|env|token|status`."""
