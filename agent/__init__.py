"""The Tether agent: pulls, verifies, serves and reports on one serving host."""
