"""Load: a simulated fleet against one real control plane."""
