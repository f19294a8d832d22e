"""The demos, and the traffic replay they share."""
