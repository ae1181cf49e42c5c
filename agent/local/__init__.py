"""Files under the agent's data directory: its state, trust, artifact cache and outbox.

What belongs here: reading and writing what the agent keeps on disk, durably and atomically.
What never does: the network, HTTP serving, models, or any policy of when to act.
"""
