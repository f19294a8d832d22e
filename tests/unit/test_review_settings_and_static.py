"""The review service without a server: settings refused in production, the queue's priority,
and the console's static files (htmx pinned by hash, nothing inline anywhere)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.review.console import STATIC, TEMPLATES, age
from services.review.queue import priority_of
from services.review.settings import AccountConfig, ReviewSettings

HTMX_VERSION = "2.0.11"


def test_development_defaults_are_refused_in_production() -> None:
    with pytest.raises(ValidationError) as refused:
        ReviewSettings(environment="production", admin_token=SecretStr("a-real-admin-token"))
    message = str(refused.value)
    for name in ("REVIEW_SESSION_SECRET", "REVIEW_ACCOUNTS[alice].password", "APPEAL_CLIENT_KEYS"):
        assert name in message


def test_production_starts_with_real_secrets() -> None:
    settings = ReviewSettings(
        environment="production",
        admin_token=SecretStr("a-real-admin-token"),
        review_session_secret=SecretStr("s" * 40),
        review_accounts=[
            AccountConfig(username="mia", role="admin", password=SecretStr("long real password"))
        ],
        review_appeal_client_keys={"webmail": SecretStr("k" * 32)},
    )
    assert settings.database_url().startswith("sqlite:///")


def test_priority_is_closeness_to_the_cutoff_plus_disagreement() -> None:
    assert priority_of(0.5, 0.5, None) == 1.0
    assert priority_of(1.0, 0.5, None) == 0.0
    assert priority_of(0.6, 0.5, None) > priority_of(0.9, 0.5, None)
    assert priority_of(0.9, 0.5, 0.1) > priority_of(0.55, 0.5, None)


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (185, "3m 5s"), (7260, "2h 1m"), (90000, "1d 1h")]
)
def test_ages_read_as_people_say_them(seconds: float, text: str) -> None:
    assert age(seconds) == text


def test_htmx_is_the_pinned_release() -> None:
    data = (STATIC / "htmx.min.js").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    readme = (STATIC / "README.md").read_text()
    assert f"| {HTMX_VERSION} | `{digest}` |" in readme
    assert f'version:"{HTMX_VERSION}"' in data.decode().replace(" ", "")


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_templates_hold_no_inline_script_or_style(template: Path) -> None:
    html = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert " style=" not in html and "<style" not in html, "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "|safe" not in html, "autoescaping turned off"
