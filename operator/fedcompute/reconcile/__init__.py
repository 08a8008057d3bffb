"""The reconcile engine: observed world -> plan (pure ``capacity`` code) -> minimal writes."""
