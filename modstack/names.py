"""Names that tie the services together (topics, Feast, policies, MLflow, serving metrics,
canary checks). Change them here only."""

from typing import Final, Literal, get_args

# Kafka topics
TOPIC_MESSAGES: Final = "messages.v1"
TOPIC_LABELS: Final = "labels.v1"
TOPIC_PREDICTIONS: Final = "predictions.v1"
TOPIC_DEADLETTER: Final = "deadletter.v1"
TOPIC_REVIEWS: Final = "reviews.v1"  # serving -> review service: messages a model was unsure of
ALL_TOPICS: Final = (
    TOPIC_MESSAGES,
    TOPIC_LABELS,
    TOPIC_PREDICTIONS,
    TOPIC_DEADLETTER,
    TOPIC_REVIEWS,
)

# Kafka consumer groups, one per consuming service
GROUP_PROCESSOR: Final = "processor"
GROUP_MONITORING: Final = "monitoring"
GROUP_REVIEW: Final = "review"

# Feast
FEAST_ENTITY: Final = "sender"
FEAST_JOIN_KEY: Final = "sender_id"
VIEW_SENDER_ACTIVITY: Final = "sender_activity"
VIEW_SENDER_REPUTATION: Final = "sender_reputation"
VIEW_MESSAGE_TEXT: Final = "message_text_features"
PUSH_SENDER_ACTIVITY: Final = "sender_activity_push"
PUSH_SENDER_REPUTATION: Final = "sender_reputation_push"
FEATURE_SERVICE_PREFIX: Final = "spam_model_"
FEATURE_SERVICE_V1: Final = f"{FEATURE_SERVICE_PREFIX}v1"


def registered_model(policy: str) -> str:
    """The MLflow registered model that holds `policy`'s classifier versions (modstack/policy)."""
    return f"{policy}-classifier"


# MLflow
REGISTERED_MODEL: Final = registered_model("spam")
ALIAS_CHAMPION: Final = "champion"
ALIAS_CHALLENGER: Final = "challenger"

# Serving
VARIANT_CHAMPION: Final = "champion"
VARIANT_CHALLENGER: Final = "challenger"
ACTIONS: Final = ("allow", "review", "block")

# Serving metrics the canary compares (<component>_<noun>_<unit>): a contract between serving,
# the canary controller, monitoring and the Prometheus rules (deploy/prometheus/rules/).
SERVING_REQUESTS_TOTAL: Final = "serving_requests_total"
SERVING_REQUEST_DURATION_SECONDS: Final = "serving_request_duration_seconds"
SERVING_SCORE: Final = "serving_score"
SERVING_ACTIONS_TOTAL: Final = "serving_actions_total"

# The canary analysis's checks, in the order they are judged and shown (the controller, its
# client and the demos share this one list)
CheckName = Literal[
    "error_rate",
    "latency_p99",
    "label_mcnemar",
    "expected_block_rate",
    "expected_score_psi",
    "score_collapse",
    "score_psi",
    "block_rate",
    "block_precision",
]
CHECK_NAMES: Final[tuple[CheckName, ...]] = get_args(CheckName)
CHECK_ERROR_RATE: Final[CheckName] = "error_rate"
CHECK_LATENCY_P99: Final[CheckName] = "latency_p99"
CHECK_LABEL_MCNEMAR: Final[CheckName] = "label_mcnemar"
CHECK_EXPECTED_BLOCK_RATE: Final[CheckName] = "expected_block_rate"
CHECK_EXPECTED_SCORE_PSI: Final[CheckName] = "expected_score_psi"
CHECK_SCORE_COLLAPSE: Final[CheckName] = "score_collapse"
CHECK_SCORE_PSI: Final[CheckName] = "score_psi"
CHECK_BLOCK_RATE: Final[CheckName] = "block_rate"
CHECK_BLOCK_PRECISION: Final[CheckName] = "block_precision"
