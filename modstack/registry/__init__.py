"""The MLflow model registry: aliases, the model contract, rollout state."""
