"""schemathesis over the review service's OpenAPI document, on the real process, the way
test_contracts_schemathesis.py fuzzes the other services (same runner, seed and checks):
no server error, every status and content type documented, responses matching their schemas.

The admin's personal token authenticates every request (it may do everything a moderator may,
and the audit); the appeal endpoints answer it with their documented 401 (they take a client
app's key), the erasure endpoint with its documented 403 (it takes ADMIN_TOKEN).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modstack.processes import log_tail
from tests.integration.test_contracts_schemathesis import requests_made, run_schemathesis
from tests.support.browser import (
    TOKENS,
    publish_reviews,
    review_request,
    running_review,
    wait_for_items,
)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_the_review_service_holds_its_openapi_contract_under_fuzzing(
    private_kafka: str, tmp_path: Path
) -> None:
    # a broker of its own: on the session's broker a new consumer group first reads every
    # review request the serving tests published (under a full `make test`, more than 30 s)
    kafka_bootstrap = private_kafka
    with running_review(tmp_path, kafka_bootstrap) as service:
        # a few items, so claims and decisions meet real rows as well as missing ones
        requests = [
            review_request(f"contract-{i}", sender=f"contract-sender-{i}") for i in range(3)
        ]
        publish_reviews(kafka_bootstrap, *requests)
        wait_for_items(service, {r.message_id for r in requests})
        # not the token rotation: it would replace the very token the fuzzer authenticates
        # with; 15 examples per operation (the other services' 50 took 37 s here)
        code, output = run_schemathesis(
            service.url, TOKENS["admin"], "--exclude-path", "/v1/me/token", "-n", "15"
        )
    assert code == 0, f"{output}\n--- review log ---\n{log_tail(service.log, 40)}"
    assert (requests_made(output) or 0) > 0
