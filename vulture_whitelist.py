"""Names vulture cannot see used: frameworks call them, or they are fields other code reads by
name. `make lint` runs vulture with this file; anything unused and not listed here fails it.
Regenerate candidates with `vulture --make-whitelist`, and list only what a framework uses."""

# ruff: noqa

from typing import Any

_: Any = None

# FastAPI routes (registered by decorator)
get_report  # unused function (services/monitoring/routes.py:75)
healthz  # unused function (modstack/http.py:205)
label_review  # unused function (services/serving/routes.py:242)
list_reports  # unused function (services/monitoring/routes.py:64)
list_review  # unused function (services/serving/routes.py:230)
prometheus_metrics  # unused function (modstack/http.py:229)
readyz  # unused function (modstack/http.py:214)
rollout_action  # unused function (services/canary/routes.py:144)
rollout_start  # unused function (services/canary/routes.py:119)
rollout_status  # unused function (services/canary/routes.py:114)

# typer commands (registered by decorator)
feast_apply  # unused function (stack/cli.py:151)
forget  # unused function (stack/cli.py:201)

# pydantic validators (called by pydantic)
_._min_rows_fit_the_window  # unused method (services/monitoring/settings.py:57)
_._refuse_dev_keys_in_production  # unused method (services/ingestion/settings.py:37)
_._refuse_dev_secrets_in_production  # unused method (modstack/settings.py:53)
_._steps_increase  # unused method (services/canary/routes.py:53)
_._steps_parse  # unused method (services/canary/settings.py:61)

# pydantic and dataclass fields (serialized: on the wire, in results files, in tables)
_.updated_at  # unused attribute (modstack/registry/rollout.py:208)
base_action  # unused variable (pipelines/behaviour.py:339)
base_body  # unused variable (pipelines/behaviour.py:337)
base_score  # unused variable (pipelines/behaviour.py:338)
base_subject  # unused variable (pipelines/behaviour.py:336)
created_files  # unused variable (features/store.py:116)
enqueued_at  # unused variable (services/serving/review_queue.py:65)
features_used  # unused variable (services/serving/schemas.py:35)
latency_ms  # unused variable (modstack/events.py:113)
latency_ms  # unused variable (services/serving/schemas.py:39)
mean_ms  # unused variable (loadtests/bench/model.py:51)
recent_message_ids  # unused variable (services/ingestion/routes.py:193)
missing_features  # unused variable (modstack/events.py:112)
missing_features  # unused variable (services/serving/schemas.py:37)
offline_rows  # unused variable (features/store.py:200)
online_rows  # unused variable (features/store.py:201)
original  # unused variable (modstack/events.py:123)
schema_version  # unused variable (modstack/events.py:53)
stale_features  # unused variable (services/serving/schemas.py:38)
updated_at  # unused variable (modstack/registry/rollout.py:90)

# locust (finds users, tasks and hooks by class and decorator)
FullPathUser  # unused class (loadtests/bench/serving_users.py:51)
MlflowUser  # unused class (loadtests/bench/serving_users.py:67)
_.bad_payload  # unused method (loadtests/locustfile.py:190)
_.invocations  # unused method (loadtests/bench/serving_users.py:76)
_.on_start  # unused method (loadtests/bench/serving_users.py:56)
_.on_start  # unused method (loadtests/bench/serving_users.py:72)
_.on_start  # unused method (loadtests/locustfile.py:149)
_.report_spam  # unused method (loadtests/locustfile.py:167)
_record_serving_cpu  # unused function (loadtests/locustfile.py:83)
_report_serving_cpu  # unused function (loadtests/locustfile.py:90)
_require_ready_stack  # unused function (loadtests/locustfile.py:52)
wait_time  # unused variable (loadtests/bench/serving_users.py:54)
wait_time  # unused variable (loadtests/bench/serving_users.py:70)
wait_time  # unused variable (loadtests/locustfile.py:147)

# scikit-learn and scipy protocols (set or read by the library)
_.classes_  # unused attribute (pipelines/model.py:136)
_.has_sorted_indices  # unused attribute (services/serving/fast_text.py:168)
input_features  # unused variable (pipelines/model.py:42)
input_features  # unused variable (pipelines/text_cleaning.py:41)

# kafka-python rebalance listener callbacks
_.on_partitions_assigned  # unused method (services/processor/service.py:141)
_.on_partitions_revoked  # unused method (services/processor/service.py:137)

# sqlite3 connection attribute
_.row_factory  # unused attribute (services/serving/review_queue.py:87)

# the feast CLI's module hooks (features/definitions.py)
__dir__  # unused function (features/definitions.py:206)
__getattr__  # unused function (features/definitions.py:200)

# the names of the second policy, used when it lands (docs/adr)
POLICIES  # unused variable (modstack/names.py:31)
