"""Code shared by the control plane and the agent: the contract between them."""
