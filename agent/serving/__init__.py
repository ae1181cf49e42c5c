"""Serving the applied models: runtimes, slots, the local inference app and its server.

What belongs here: loading artifacts into models, validating rows, answering predictions over
HTTP (OIP v2 and /predict) or in-process, and the events a prediction leaves for the hooks.
What never does: the control plane, the disk's bookkeeping, shadow runs or drift.
"""
