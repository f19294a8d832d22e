"""The review service from outside, with plain HTTP: a real process, the session's real
broker. Nothing answers without credentials (401/403 for the API, a redirect to /login for
pages, never a 500); reviews.v1 is consumed idempotently; a decision made with a personal
token through modstack.review_client lands on labels.v1 under that account's name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from modstack.review_client import ClaimedByOther, ReviewClient, ReviewError
from tests.support.browser import (
    APPEAL_KEY,
    SENT_AT,
    TOKENS,
    ReviewService,
    label_reader,
    publish_reviews,
    review_request,
    running_review,
    wait_for_items,
)

pytestmark = pytest.mark.integration

PAGES = ["/", "/queue", "/queue/rows", "/items/1", "/audit", "/audit.csv", "/stats"]
API = [
    ("GET", "/v1/me"),
    ("POST", "/v1/me/token"),
    ("GET", "/v1/queue"),
    ("GET", "/v1/items/1"),
    ("POST", "/v1/items/1/claim"),
    ("POST", "/v1/items/1/release"),
    ("POST", "/v1/items/1/decision"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit.csv"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/appeals"),
    ("GET", "/v1/appeals/x"),
    ("DELETE", "/v1/admin/senders/x"),
]


@pytest.fixture(scope="module")
def service(
    private_kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReviewService]:
    """On a broker of the module's own: the test counts every event on reviews.v1."""
    with running_review(tmp_path_factory.mktemp("review-api"), private_kafka) as running:
        yield running


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_login_without_a_session(service: ReviewService, path: str) -> None:
    answer = httpx.get(service.url + path, follow_redirects=False, timeout=10)
    if path == "/":
        assert answer.status_code == 303 and answer.headers["location"] == "/queue"
        return
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/login?next=")
    assert "Content-Security-Policy" in answer.headers


def test_an_htmx_refresh_without_a_session_sends_the_page_to_login(service: ReviewService) -> None:
    answer = httpx.get(service.url + "/queue/rows", headers={"HX-Request": "true"}, timeout=10)
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == "/login?next=/queue/rows"


@pytest.mark.parametrize(("method", "path"), API)
def test_the_api_refuses_without_credentials(
    service: ReviewService, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        answer = httpx.request(method, service.url + path, headers=headers, json={}, timeout=10)
        assert answer.status_code in (401, 403), (method, path, answer.status_code, answer.text)


def test_a_moderator_is_refused_admin_endpoints_and_a_cookie_needs_csrf(
    service: ReviewService,
) -> None:
    with service.api("alice") as api:
        assert api.get("/v1/me").json() == {"username": "alice", "role": "moderator"}
        assert api.get("/v1/audit").status_code == 403
    forged = httpx.post(
        service.url + "/v1/items/1/claim", cookies={"review_session": "forged"}, timeout=10
    )
    assert forged.status_code == 401


def test_the_login_page_is_served_with_a_strict_csp(service: ReviewService) -> None:
    answer = httpx.get(service.url + "/login", timeout=10)
    assert answer.status_code == 200
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in answer.text and " style=" not in answer.text


def form_token(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def test_login_locks_out_after_repeated_failures(service: ReviewService) -> None:
    form = {"username": "bob", "password": "wrong", "next": "/queue"}
    statuses = []
    with httpx.Client(base_url=service.url, timeout=10) as browser:
        page = browser.get("/login")
        for _ in range(5):  # each answer carries a fresh form token (and its cookie)
            page = browser.post("/login", data={**form, "csrf": form_token(page.text)})
            statuses.append(page.status_code)
        right = browser.post(
            "/login",
            data={**form, "password": "bob-dev-password", "csrf": form_token(page.text)},
        )
    assert statuses == [401] * 5
    assert right.status_code == 429 and "locked" in right.text
    no_csrf = httpx.post(service.url + "/login", data={**form, "csrf": ""}, timeout=10)
    assert no_csrf.status_code == 403


def test_reviews_are_consumed_once_and_decided_through_the_client(service: ReviewService) -> None:
    run = uuid.uuid4().hex[:8]
    first = review_request(f"api-{run}-1", sender=f"api-sender-{run}")
    second = review_request(f"api-{run}-2", policy="abuse", body="you idiot")
    publish_reviews(service.kafka, first, first, second, raw=(b"not json",))
    items = wait_for_items(service, {first.message_id, second.message_id})
    with (
        ReviewClient(service.url, token=TOKENS["alice"]) as alice,
        ReviewClient(service.url, token=TOKENS["bob"]) as bob,
    ):
        item = items[first.message_id]
        assert alice.claim(item["id"]).claimed_by == "alice"
        with pytest.raises(ClaimedByOther, match="claimed by alice"):
            bob.claim(item["id"])
        with pytest.raises(ReviewError) as refused:
            bob.decide(item["id"], "ok")
        assert refused.value.status == 409
        decided = alice.decide(item["id"], "harm")
    assert decided.label == "spam" and decided.decided == [item["id"]]
    with label_reader(service.kafka) as wait:
        label = wait(lambda e: e.message_id == first.message_id, 20.0)
    assert (label.source, label.moderator_id, label.policy, label.label) == (
        "moderator",
        "alice",
        "spam",
        "spam",
    )
    with service.api("admin") as api:
        queued = [i["message_id"] for i in api.get("/v1/queue").json()["items"]]
        audit = api.get("/v1/audit").json()
        csv_text = api.get("/v1/audit.csv").text
        metrics = api.get("/metrics").text
    assert queued.count(first.message_id) == 0 and queued.count(second.message_id) == 1
    row = next(a for a in audit if a["message_id"] == first.message_id)
    assert (row["moderator_id"], row["model_version"], row["sent_at"]) == (
        "alice",
        "3",
        SENT_AT.isoformat(),
    )
    assert first.message_id in csv_text.splitlines()[1] or first.message_id in csv_text
    assert 'review_decisions_total{decision="harm",moderator="alice",policy="spam"} 1.0' in metrics
    assert 'review_queue_depth_items{policy="abuse"}' in metrics
    assert "review_oldest_pending_age_seconds" in metrics
    assert 'review_model_agreement_total{agreed="true",model_version="3",policy="spam"}' in metrics
    assert 'review_requests_total{outcome="duplicate"} 1.0' in metrics
    assert 'review_requests_total{outcome="invalid"} 1.0' in metrics


def test_appeals_need_a_client_key_and_report_their_outcome(service: ReviewService) -> None:
    body = {
        "message_id": f"appeal-{uuid.uuid4().hex[:8]}",
        "sender_id": "appealing-sender",
        "policy": "spam",
        "subject": "my invoice",
        "body": "Please find the invoice attached.",
        "sent_at": SENT_AT.isoformat(),
        "reason": "This is a real invoice.",
    }
    assert httpx.post(service.url + "/v1/appeals", json=body, timeout=10).status_code == 401
    key = {"Authorization": f"Bearer {APPEAL_KEY}"}
    filed = httpx.post(service.url + "/v1/appeals", json=body, headers=key, timeout=10)
    again = httpx.post(service.url + "/v1/appeals", json=body, headers=key, timeout=10)
    assert (filed.status_code, again.status_code) == (202, 200)
    assert filed.json()["status"] == "pending" and not filed.json()["released"]
    appeal_id = filed.json()["appeal_id"]
    assert again.json()["appeal_id"] == appeal_id
    status = httpx.get(f"{service.url}/v1/appeals/{appeal_id}", headers=key, timeout=10)
    assert status.json()["status"] == "pending"
    assert httpx.get(f"{service.url}/v1/appeals/{appeal_id}", timeout=10).status_code == 401
