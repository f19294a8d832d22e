"""Browser tests of the review console: Playwright driving Debian's Chromium (by path:
Playwright cannot download browsers here), against a real review service and the session's
real broker. Skipped, with the reason, only when no Chromium is installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM_ARGS, ReviewService, chromium_path, running_review

# the lease is a setting: 2 s here, so a test can watch one expire
LEASE_S = 2.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium (tests/browser)")


# package scope, not session: Playwright's sync API runs an event loop in the main thread
# while it is open, and every later test calling asyncio.run() would fail on it
@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium installed: `apt-get install chromium` (make setup does it as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def review(private_kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewService]:
    """The service on a broker of the module's own: its new consumer group reads reviews.v1
    from the start, and the queue (and its screenshot) must hold only this module's items."""
    tmp: Path = tmp_path_factory.mktemp("review-browser")
    with running_review(tmp, private_kafka, {"REVIEW_LEASE_S": str(LEASE_S)}) as service:
        yield service
