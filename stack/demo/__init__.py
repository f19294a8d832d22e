"""The demos that start the local stack: the whole story, a rollout, a rollback."""
