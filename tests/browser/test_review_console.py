"""The review console in a real browser (Debian's Chromium through Playwright), against a real
review service and the session's real broker: signing in, the keyboard, claims and their
lease, labels on labels.v1, hostile message bodies, CSRF, appeals."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import LEASE_S
from tests.support.browser import (
    APPEAL_KEY,
    PASSWORDS,
    SENT_AT,
    ReviewService,
    label_reader,
    publish_reviews,
    review_request,
    wait_for_items,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "review-console.png"
SignIn = Callable[[str], Any]


@pytest.fixture
def sign_in(browser: Any, review: ReviewService) -> Iterator[SignIn]:
    """`sign_in("alice")`: a page of a fresh browser context, signed in through the login form,
    on the queue. Every context is closed at the end; CSP violations fail the test."""
    contexts: list[Any] = []
    violations: list[str] = []

    def open_page(who: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 760})
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(f"{review.url}/login")
        page.fill('input[name="username"]', who)
        page.fill('input[name="password"]', PASSWORDS[who])
        page.click('button[type="submit"]')
        page.wait_for_url("**/queue")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not violations, f"the pages broke their own CSP: {violations}"


def one_item(review: ReviewService, **fields: Any) -> tuple[str, int]:
    """Publish one ReviewRequest; its message id and queue item id once consumed."""
    message_id = f"browser-{uuid.uuid4().hex[:10]}"
    publish_reviews(review.kafka, review_request(message_id, **fields))
    return message_id, int(wait_for_items(review, {message_id})[message_id]["id"])


def test_signing_in_shows_the_queue_and_the_keys_move_through_it(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    samples = [
        ("spam", 0.52, "Limited offer: 90% off watches", "Click now to claim your prize..."),
        ("spam", 0.71, "Re: invoice 4471", "Please see the attached invoice and pay today."),
        ("abuse", 0.49, "about your comment", "You clearly have no idea what you're doing."),
        ("spam", 0.88, "WIN WIN WIN", "Free money for the first 100 people."),
        ("abuse", 0.63, "last warning", "People like you should not be allowed to post."),
    ]
    requests = [
        review_request(
            f"shot-{uuid.uuid4().hex[:8]}",
            policy=policy,
            score=score,
            subject=subject,
            body=body,
            sender=f"sender-{i}",
        )
        for i, (policy, score, subject, body) in enumerate(samples)
    ]
    publish_reviews(review.kafka, *requests)
    wait_for_items(review, {r.message_id for r in requests})

    page = sign_in("alice")
    rows = page.locator("#rows tr.row")
    expect(rows).to_have_count(len(samples))
    expect(rows.first.locator("td.age")).to_have_text(re.compile(r"^\d+[smhd]"))
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator("#rows tr.row.selected")).to_have_count(1)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    selected = page.locator("#rows tr.row.selected").get_attribute("data-href")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{selected}")
    expect(page.locator("#body")).to_have_class(re.compile("blurred"))

    page.goto(f"{review.url}/queue?policy=abuse")
    expect(page.locator("#rows tr.row")).to_have_count(2)
    page.select_option("select[name=policy]", "spam")  # htmx swaps the rows in
    expect(page.locator("#rows tr.row")).to_have_count(3)
    # the periodic refresh sends the chosen policy along
    assert page.locator("#rows").get_attribute("hx-include") == "select[name='policy']"


def test_a_second_moderator_is_refused_the_item_another_claimed(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    _, item_id = one_item(review)
    alice, bob = sign_in("alice"), sign_in("bob")
    alice.goto(f"{review.url}/items/{item_id}")
    bob.goto(f"{review.url}/items/{item_id}")
    alice.keyboard.press("c")
    expect(alice.locator("#claim-status")).to_contain_text("claimed by alice")
    with bob.expect_response(lambda r: r.url.endswith("/claim")) as refused:
        bob.keyboard.press("c")
    assert refused.value.status == 409
    expect(bob.locator("#flash")).to_contain_text("claimed by alice")
    alice.keyboard.press("c")  # renew: the lease here is only LEASE_S
    with bob.expect_response(lambda r: r.url.endswith("/claim")) as again:
        bob.keyboard.press("h")  # a decision key claims first: refused, nothing decided
    assert again.value.status == 409
    assert bob.url.endswith(f"/items/{item_id}")


def test_a_keyboard_decision_lands_on_labels_with_the_moderators_name(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    message_id, item_id = one_item(review, policy="abuse", body="you absolute clown")
    alice = sign_in("alice")
    alice.goto(f"{review.url}/items/{item_id}")
    body = alice.locator("#body")
    expect(body).to_have_class(re.compile("blurred"))
    alice.keyboard.press("r")
    expect(body).not_to_have_class(re.compile("blurred"))
    alice.keyboard.press("h")  # harm: abuse's positive label, then the next item
    alice.wait_for_url(lambda url: not url.endswith(f"/items/{item_id}"))
    with label_reader(review.kafka) as wait:
        label = wait(lambda e: e.message_id == message_id, 20.0)
    assert (label.source, label.moderator_id, label.policy, label.label) == (
        "moderator",
        "alice",
        "abuse",
        "abuse",
    )


def test_an_expired_lease_returns_the_item_to_the_queue(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    _, item_id = one_item(review, subject="lease test")
    alice, bob = sign_in("alice"), sign_in("bob")
    alice.goto(f"{review.url}/items/{item_id}")
    alice.keyboard.press("c")
    expect(alice.locator("#claim-status")).to_contain_text("claimed by alice")
    bob.goto(f"{review.url}/queue")
    holder = bob.locator(f'#rows tr[data-item-id="{item_id}"] td.holder')
    expect(holder).to_have_text("alice")
    time.sleep(LEASE_S + 0.5)
    # the queue refreshes itself (htmx, every 5 s): the row shows no holder any more
    expect(holder).to_have_text("", timeout=12_000)
    bob.goto(f"{review.url}/items/{item_id}")
    bob.keyboard.press("c")
    expect(bob.locator("#claim-status")).to_contain_text("claimed by bob")


def test_hostile_bodies_render_as_text_and_run_nothing(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    payload = (
        "<script>window.pwned = 1</script>"
        '<img src="x" onerror="window.pwned = 2">'
        '<a href="javascript:window.pwned=3">click</a>'
    )
    _, item_id = one_item(review, subject="<script>window.pwned = 4</script>", body=payload)
    page = sign_in("alice")
    expect(page.locator("#rows")).to_contain_text("<script>window.pwned = 4</script>")
    page.goto(f"{review.url}/items/{item_id}")
    page.locator("#body").click()  # revealed
    expect(page.locator("#body")).to_have_text(payload)
    assert page.locator("#body img, #body script, #body a").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_post_without_the_csrf_token_is_refused(review: ReviewService, sign_in: SignIn) -> None:
    _, item_id = one_item(review)
    page = sign_in("bob")
    page.goto(f"{review.url}/items/{item_id}")
    without = page.evaluate(
        "async (id) => (await fetch(`/v1/items/${id}/claim`, {method: 'POST'})).status", item_id
    )
    with_token = page.evaluate(
        """async (id) => (await fetch(`/v1/items/${id}/claim`, {method: 'POST', headers:
        {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}})).status""",
        item_id,
    )
    assert (without, with_token) == (403, 200)
    logout = page.request.post(f"{review.url}/logout", form={"csrf": ""})
    assert logout.status == 403
    page.goto(f"{review.url}/queue")
    assert page.url.endswith("/queue")  # still signed in: the forged logout did nothing


def test_an_overturned_appeal_releases_the_senders_message(
    review: ReviewService, sign_in: SignIn
) -> None:
    from playwright.sync_api import expect

    message_id = f"appeal-{uuid.uuid4().hex[:10]}"
    key = {"Authorization": f"Bearer {APPEAL_KEY}"}
    filed = httpx.post(
        f"{review.url}/v1/appeals",
        headers=key,
        timeout=10,
        json={
            "message_id": message_id,
            "sender_id": "appealing-sender",
            "policy": "spam",
            "subject": "Minutes of Tuesday's meeting",
            "body": "Attached are the minutes, as promised.",
            "sent_at": SENT_AT.isoformat(),
            "reason": "This was not spam: it is the minutes my team asked for.",
            "model_version": "3",
            "score": 0.97,
        },
    )
    assert filed.status_code == 202, filed.text
    appeal_id = filed.json()["appeal_id"]
    item_id = int(wait_for_items(review, {message_id})[message_id]["id"])
    bob = sign_in("bob")
    bob.goto(f"{review.url}/items/{item_id}")
    expect(bob.locator(".appeal-reason")).to_contain_text("minutes my team asked for")
    bob.keyboard.press("o")  # overturn: the negative label, and the message is released
    bob.wait_for_url(lambda url: not url.endswith(f"/items/{item_id}"))
    with label_reader(review.kafka) as wait:
        label = wait(lambda e: e.message_id == message_id, 20.0)
    assert (label.moderator_id, label.label, label.policy) == ("bob", "ham", "spam")
    outcome = httpx.get(f"{review.url}/v1/appeals/{appeal_id}", headers=key, timeout=10).json()
    assert outcome["status"] == "overturned" and outcome["released"] is True
