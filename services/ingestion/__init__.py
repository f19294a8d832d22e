"""Ingestion: HTTP in (`POST /v1/messages`, `POST /v1/labels`), Kafka out (`messages.v1`,
`labels.v1`, keyed by sender_id). Answers 202 only once the broker acknowledged every event."""
