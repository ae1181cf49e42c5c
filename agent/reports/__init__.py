"""What the agent learns from live traffic: shadow runs, drift windows, and their reports.

What belongs here: the shadow runner and its child process, the drift window, and the loop
that cuts windows into reports for the outbox.
What never does: the control plane's API (the outbox is flushed by the daemon's jobs), serving.
"""
