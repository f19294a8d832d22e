"""A small typed client of the review service's moderator API, for scripts (the demo's
simulated moderator): a personal API token (`Authorization: Bearer`), the same endpoints the
console's actions use. Decisions are recorded under the token's account, never a name sent.

    with ReviewClient("http://127.0.0.1:8005", token=DEV_MODERATOR_TOKEN) as client:
        for item in client.queue(policy="spam"):
            client.claim(item.id)
            client.decide(item.id, "harm")
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

# The dev moderator's personal token (docs/review.md); the service refuses it in production.
DEV_MODERATOR_TOKEN = "dev-review-token-alice"
DEFAULT_REVIEW_ADDR = "http://127.0.0.1:8005"

Decision = Literal["harm", "ok", "escalate", "skip"]


class ReviewError(RuntimeError):
    """The service refused (status and its detail) or could not be reached (status 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class ClaimedByOther(ReviewError):
    """409: another moderator holds the item, it was decided, or your claim expired."""


class QueueItem(BaseModel):
    """An item as the API lists it (the fields a script needs; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    kind: Literal["review", "appeal"]
    message_id: str
    policy: str
    positive_label: str
    negative_label: str
    sender_id: str
    subject: str
    body: str
    score: float
    model_version: str
    variant: str
    age_s: float
    status: str
    claimed_by: str | None
    claim_expires_at: str | None


class Decided(BaseModel):
    model_config = ConfigDict(extra="ignore")

    decided: list[int]
    decision: Decision
    label: str | None
    released: bool
    next_item_id: int | None


class ReviewClient:
    """The moderator API with a personal token."""

    def __init__(
        self, addr: str | None = None, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.addr = (addr or os.environ.get("REVIEW_ADDR") or DEFAULT_REVIEW_ADDR).rstrip("/")
        secret = token or os.environ.get("REVIEW_TOKEN") or DEV_MODERATOR_TOKEN
        self._http = httpx.Client(
            base_url=self.addr, timeout=timeout_s, headers={"Authorization": f"Bearer {secret}"}
        )

    def __enter__(self) -> ReviewClient:
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ReviewError(
                0, f"review service at {self.addr} unreachable ({exc}): is it running?"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", response.text))
            except ValueError:
                detail = response.text
            error = ClaimedByOther if response.status_code == 409 else ReviewError
            raise error(response.status_code, detail)
        return response.json()

    def me(self) -> dict[str, str]:
        """{"username", "role"} of the token's account."""
        return dict(self._call("GET", "/v1/me"))

    def queue(self, policy: str | None = None, limit: int = 100) -> list[QueueItem]:
        """Pending items in the order to take them (bodies shortened)."""
        params: dict[str, Any] = {"limit": limit}
        if policy:
            params["policy"] = policy
        page = self._call("GET", "/v1/queue", params=params)
        return [QueueItem.model_validate(item) for item in page["items"]]

    def item(self, item_id: int) -> QueueItem:
        """One item with its whole body."""
        return QueueItem.model_validate(self._call("GET", f"/v1/items/{item_id}")["item"])

    def claim(self, item_id: int) -> QueueItem:
        """Hold the item for the service's lease; ClaimedByOther when someone else does."""
        return QueueItem.model_validate(self._call("POST", f"/v1/items/{item_id}/claim"))

    def release(self, item_id: int) -> QueueItem:
        return QueueItem.model_validate(self._call("POST", f"/v1/items/{item_id}/release"))

    def decide(self, item_id: int, decision: Decision, wave: bool = False) -> Decided:
        """Decide an item you claimed: harm / ok publish the policy's positive / negative
        label; escalate hands it to an admin; skip gives it back."""
        body = {"decision": decision, "wave": wave}
        return Decided.model_validate(
            self._call("POST", f"/v1/items/{item_id}/decision", json=body)
        )
