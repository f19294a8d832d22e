"""Stream processor: consumes `messages.v1` + `labels.v1` (group `processor`), computes per-sender
features in event time, pushes them to Feast (online + offline) and appends every accepted
event to the offline message log; unparseable events go to `deadletter.v1`."""
