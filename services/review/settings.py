"""The review service's knobs on top of the common settings (env vars `REVIEW_*`).

Development defaults let `make up` run with no configuration: three dev accounts (two
moderators, one admin) with documented passwords and personal API tokens (docs/review.md), a
dev session secret, and the appeal client key of the local stack's client app. With
ENVIRONMENT=production every one of these placeholders is refused at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from modstack.http import DEV_CLIENT, DEV_CLIENT_KEY
from modstack.names import GROUP_REVIEW
from modstack.settings import CommonSettings

Role = Literal["moderator", "admin"]
DEV_SESSION_SECRET = "dev-review-session-secret"
REVIEW_DB_RELATIVE = Path("review") / "review.sqlite3"


class AccountConfig(BaseModel):
    """One console account as configured: the password and the personal API token are hashed
    before they are stored (argon2 for the password, SHA-256 for the high-entropy token)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    role: Role
    password: SecretStr
    token: SecretStr | None = None


# The documented dev accounts (docs/review.md); refused when ENVIRONMENT=production.
DEV_ACCOUNTS: tuple[AccountConfig, ...] = (
    AccountConfig(
        username="alice",
        role="moderator",
        password=SecretStr("alice-dev-password"),
        token=SecretStr("dev-review-token-alice"),
    ),
    AccountConfig(
        username="bob",
        role="moderator",
        password=SecretStr("bob-dev-password"),
        token=SecretStr("dev-review-token-bob"),
    ),
    AccountConfig(
        username="admin",
        role="admin",
        password=SecretStr("admin-dev-password"),
        token=SecretStr("dev-review-token-admin"),
    ),
)
_DEV_SECRETS = {
    secret.get_secret_value()
    for account in DEV_ACCOUNTS
    for secret in (account.password, account.token)
    if secret is not None
} | {DEV_SESSION_SECRET, DEV_CLIENT_KEY}


class ReviewSettings(CommonSettings):
    """`REVIEW_*` env vars; the listen address is `REVIEW_ADDR` (a common setting)."""

    # SQLAlchemy URL of the queue's database; empty: SQLite under DATA_DIR/review/.
    # PostgreSQL in compose and k8s: postgresql+psycopg2://user:password@host:5432/review
    review_database_url: SecretStr = SecretStr("")
    review_consumer_group: str = GROUP_REVIEW
    # How long a claim holds an item for its moderator before it returns to the queue.
    review_lease_s: float = Field(default=300.0, gt=0.0)
    # An item pending this long goes before every younger one, whatever its priority.
    review_age_floor_s: float = Field(default=3600.0, gt=0.0)
    # The score a model leans harmful from, per policy ({"spam": 0.5}); 0.5 where unset.
    # Priority is the closeness of an item's score to it (ReviewRequest carries no cut-off).
    review_cutoffs: dict[str, float] = Field(default_factory=dict)
    review_session_secret: SecretStr = SecretStr(DEV_SESSION_SECRET)
    review_session_max_age_s: int = Field(default=8 * 3600, gt=0)
    # Secure cookies (HTTPS only); off locally, where the console is plain http on loopback.
    review_cookie_secure: bool = False
    review_lockout_failures: int = Field(default=5, ge=1)
    review_lockout_window_s: float = Field(default=900.0, gt=0.0)
    review_accounts: list[AccountConfig] = Field(default_factory=lambda: list(DEV_ACCOUNTS))
    # Client apps allowed to file appeals for their users: {"client": "key"}, Bearer.
    review_appeal_client_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEV_CLIENT: SecretStr(DEV_CLIENT_KEY)}
    )
    # Bounds on waiting for the broker's acknowledgement of a label.
    review_publish_timeout_s: float = Field(default=5.0, gt=0.0)
    review_list_limit: int = Field(default=200, ge=1, le=1000)

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> ReviewSettings:
        if self.environment != "production":
            return self
        found = [name for name, value in self._secrets() if value in _DEV_SECRETS or not value]
        if found:
            raise ValueError(
                "ENVIRONMENT=production refuses development placeholders or empty secrets in "
                f"{', '.join(found)}: set real ones (see docs/review.md)"
            )
        return self

    def _secrets(self) -> list[tuple[str, str]]:
        pairs = [("REVIEW_SESSION_SECRET", self.review_session_secret.get_secret_value())]
        for account in self.review_accounts:
            name = f"REVIEW_ACCOUNTS[{account.username}]"
            pairs.append((f"{name}.password", account.password.get_secret_value()))
            if account.token is not None:
                pairs.append((f"{name}.token", account.token.get_secret_value()))
        for client, key in self.review_appeal_client_keys.items():
            pairs.append((f"REVIEW_APPEAL_CLIENT_KEYS[{client}]", key.get_secret_value()))
        return pairs

    def database_url(self) -> str:
        """REVIEW_DATABASE_URL, or the SQLite file under DATA_DIR."""
        url = self.review_database_url.get_secret_value()
        if url:
            return url
        path = (self.data_dir / REVIEW_DB_RELATIVE).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def cutoff(self, policy: str) -> float:
        return self.review_cutoffs.get(policy, 0.5)
