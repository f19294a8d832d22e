"""Names vulture cannot see used: framework hooks (routes, validators, locust tasks, pydantic and
typer config). Each line names one; anything else unused fails `make lint`."""
