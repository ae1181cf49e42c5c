"""Talking to the control plane and acting on what it says.

What belongs here: the client and its transports, the poller, the reconciler and the plan it
follows (what a manifest asks of each model against what serves).
What never does: serving requests, reports, or air-gapped imports (those reuse the reconciler).
"""
