"""Hostile input: fuzzed requests, property tests of every parser, scopes of every token."""
