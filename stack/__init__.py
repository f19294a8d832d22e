"""The composition root: the `modstack` CLI, the local stack (supervisord programs, preflight,
system packages) and the demos that start it. It imports everything below; nothing imports it."""
