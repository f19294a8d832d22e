"""Names that tie the services together (topics, Feast, MLflow, metrics, canary checks).
Change them here only."""

from typing import Final

# Kafka topics
TOPIC_MESSAGES: Final = "messages.v1"
TOPIC_LABELS: Final = "labels.v1"
TOPIC_PREDICTIONS: Final = "predictions.v1"
TOPIC_DEADLETTER: Final = "deadletter.v1"
ALL_TOPICS: Final = (TOPIC_MESSAGES, TOPIC_LABELS, TOPIC_PREDICTIONS, TOPIC_DEADLETTER)

# Kafka consumer groups, one per consuming service
GROUP_PROCESSOR: Final = "processor"
GROUP_MONITORING: Final = "monitoring"

# Feast
FEAST_PROJECT: Final = "moderation"
FEAST_ENTITY: Final = "sender"
FEAST_JOIN_KEY: Final = "sender_id"
VIEW_SENDER_ACTIVITY: Final = "sender_activity"
VIEW_SENDER_REPUTATION: Final = "sender_reputation"
VIEW_MESSAGE_TEXT: Final = "message_text_features"
PUSH_SENDER_ACTIVITY: Final = "sender_activity_push"
PUSH_SENDER_REPUTATION: Final = "sender_reputation_push"
FEATURE_SERVICE_PREFIX: Final = "spam_model_"
FEATURE_SERVICE_V1: Final = f"{FEATURE_SERVICE_PREFIX}v1"

# MLflow
MLFLOW_EXPERIMENT: Final = "spam-moderation"
REGISTERED_MODEL: Final = "spam-classifier"
ALIAS_CHAMPION: Final = "champion"
ALIAS_CHALLENGER: Final = "challenger"

# Serving
VARIANT_CHAMPION: Final = "champion"
VARIANT_CHALLENGER: Final = "challenger"
ACTIONS: Final = ("allow", "review", "block")

# The canary analysis's checks, in the order they are judged and shown (the controller, its
# client and the demos share this one list)
CHECK_NAMES: Final[tuple[str, ...]] = (
    "error_rate",
    "latency_p99",
    "label_mcnemar",
    "expected_block_rate",
    "expected_score_psi",
    "score_collapse",
    "score_psi",
    "block_rate",
    "block_precision",
)
