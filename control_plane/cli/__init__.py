"""Operator commands: `tether server|model|env|token|status`."""
