"""The Tether control plane: model registry, desired state, fleet status."""
