"""Predict in-process from the models the agent applied: the stable import for applications.

Applications that embed the agent import `agent.embedded.LocalModels`; the code lives in
`agent.serving.embedded`, beside the rest of serving.
"""

from agent.serving.embedded import LocalModels

__all__ = ["LocalModels"]
