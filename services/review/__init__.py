"""Review: the moderators' service. Consumes `reviews.v1` (ReviewRequest, one per message and
policy a model was unsure of) into a queue (PostgreSQL, or SQLite locally), serves the web
console and the moderator API, takes appeals, and publishes each decision as a moderator
LabelEvent on `labels.v1`. Port 8005, `python -m services.review`; docs/review.md."""
