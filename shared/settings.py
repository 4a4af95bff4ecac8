"""All configuration in one object, read from COMPLAINTS_* environment variables (or a .env).

Create it once at start-up and pass it in; nothing deeper reads os.environ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from shared.domain.policy import DEFAULT_POLICY_PATH

DEV_SECRET = "dev-only-insecure-secret-change-me-0123456789"
DEV_INDEX_KEY = "dev-only-index-key-change-me-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPLAINTS_", env_file=".env", extra="ignore")

    #: `make run` sets development; anything else must bring its own COMPLAINTS_JWT_SECRET.
    environment: Literal["development", "production"] = "production"
    #: sqlite:///path/to/file.sqlite3 (default) or postgresql://user:pass@host:5432/dbname
    database_url: str = "sqlite:///./var/complaints.sqlite3"
    jwt_secret: SecretStr = SecretStr(DEV_SECRET)
    jwt_algorithm: Literal["HS256"] = "HS256"
    #: Keys the ids that link a customer's repeat complaints (HMAC); keep it stable and secret.
    index_key: SecretStr = SecretStr(DEV_INDEX_KEY)
    policy_path: Path = DEFAULT_POLICY_PATH
    #: Policy versions an improvement report may re-analyse under (`?policy=<version>`): every
    #: `*.toml` in this directory, besides the one in force.
    policy_dir: Path = DEFAULT_POLICY_PATH.parent
    #: Longest period one improvement report may cover (422 beyond).
    report_max_days: int = Field(default=400, ge=1, le=3660)

    #: Take a snapshot every N events of a complaint, so reads stay fast on long histories.
    snapshot_interval: int = Field(default=50, ge=2)
    #: Threads that may run event-store calls at once; the PostgreSQL pool is sized to match.
    store_threads: int = Field(default=16, ge=1, le=64)
    #: Attempts of a command that keeps losing the optimistic-concurrency race before 409.
    write_attempts: int = Field(default=12, ge=1, le=100)
    #: A claimed Idempotency-Key whose request died is taken over after this many seconds.
    idempotency_lease_seconds: float = Field(default=30.0, gt=0)
    #: How long the answer to an Idempotency-Key is kept (a retry after that finds what its
    #: request wrote; the answer holds no personal data).
    idempotency_retention_hours: float = Field(default=24.0, ge=1, le=24 * 90)
    #: Days an archived complaint keeps its customer's personal data: once every complaint of a
    #: customer has been archived this long, their data is erased by itself (as by
    #: `POST /customers/{id}/erasure`). 0 turns it off.
    personal_data_retention_days: int = Field(default=730, ge=0, le=36500)
    #: Longest period one audit export may cover (422 beyond); a longer one is exported period
    #: by period, each export's first `prev_hash` being the last `hash` of the one before.
    audit_export_max_days: int = Field(default=366, ge=1, le=36500)
    #: How long an audit export waits for the chain (built asynchronously) to reach every event
    #: committed before the request; 503 with Retry-After if it does not get there in time.
    audit_export_wait_seconds: float = Field(default=2.0, ge=0, le=30)
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Requests per second each client (token `sub`, else address) may make on average, and
    #: the burst it may send at once; beyond that 429 with Retry-After. 0 turns limits off.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    log_level: str = "info"

    #: Ed25519 private key (PEM) that signs audit checkpoints; created by setup in development.
    audit_key_path: Path = Path("./var/audit-signing-key.pem")
    #: The key-encryption keys (KEKs) that wrap the customers' keys: a file, mode 600, kept
    #: apart from the database and its backups; created by setup in development.
    kek_path: Path = Path("./var/key-encryption-keys")
    #: Days a KEK is kept after a rotation superseded it; `python -m shared.cli.kek purge`
    #: destroys it then, and no copy of a key it wrapped (a backup, a WAL segment) opens again.
    kek_retention_days: int = Field(default=30, ge=0, le=3650)
    #: Sign the audit chain head this often (seconds), when it has moved.
    checkpoint_seconds: float = Field(default=60.0, gt=0)
    #: Run the projections in this process (one process at a time holds the lease).
    projector_enabled: bool = True
    projector_lease_seconds: float = Field(default=10.0, gt=0)
    #: How often a projector polls when no NOTIFY wakes it (SQLite always polls).
    projector_poll_seconds: float = Field(default=0.25, gt=0)
    #: How many complaints the projector keeps in memory (least recently touched dropped
    #: first), so a batch folds its events onto them instead of loading each from the
    #: store; about 22 KB each for a complaint of four events (45 MB at 2,000), more for
    #: longer ones. 0 loads every complaint a batch touches.
    projection_cache_size: int = Field(default=2_000, ge=0)
    #: Run the deadline watch in escalation processes (any number may run at once).
    deadline_watch_enabled: bool = True
    #: How often the deadline watch looks for limits that have passed.
    deadline_watch_seconds: float = Field(default=1.0, gt=0)
    #: How often escalation processes look for limits counted on an estimated holiday schedule
    #: that the policy in force now knows officially (and at start).
    recalculation_seconds: float = Field(default=600.0, gt=0)
    #: Run the notification dispatcher in investigation processes (one at a time, by lease).
    dispatcher_enabled: bool = True
    #: Where the SMS/e-mail gateway takes messages (POST, JSON, Idempotency-Key honoured).
    notification_gateway_url: str = "http://127.0.0.1:8025/messages"
    #: Timeout of one call to the gateway, in seconds.
    notification_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: First retry after this many seconds, doubling up to `notification_backoff_max_seconds`.
    notification_backoff_seconds: float = Field(default=2.0, gt=0)
    notification_backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: Run the webhook sender in intake processes (one at a time, by lease).
    webhooks_enabled: bool = True
    #: Timeout of one webhook delivery attempt, in seconds.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: A failed delivery is tried again after this many seconds, doubling up to the maximum,
    #: and given up (`failed`) after `webhook_max_attempts` attempts.
    webhook_backoff_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    #: Accept receivers on this machine or a private network, and plain http (a local
    #: receiver). Off, only https to public addresses (no SSRF into the operator's network);
    #: development always allows them.
    webhook_local_urls: bool = False
    #: How long a list with `min_position` waits for the projection to get there.
    read_your_writes_seconds: float = Field(default=5.0, ge=0, le=30)

    @property
    def rate_limit_window_seconds(self) -> float:
        """The limiter allows `burst` requests per this many seconds."""
        return self.rate_limit_burst / self.rate_limit_per_second

    @model_validator(mode="after")
    def _whole_rate_window(self) -> Settings:
        """The window must be a whole number of seconds, or the limiter would not keep it."""
        if self.rate_limit_per_second > 0:
            window = self.rate_limit_window_seconds
            if window < 1 or window != int(window):
                raise ValueError(
                    "COMPLAINTS_RATE_LIMIT_BURST divided by COMPLAINTS_RATE_LIMIT_PER_SECOND "
                    "must be a whole number of seconds, at least 1 (e.g. 200 and 100)"
                )
        return self

    @property
    def webhook_local_urls_allowed(self) -> bool:
        return self.webhook_local_urls or self.environment == "development"

    @property
    def url(self) -> URL:
        return make_url(self.database_url)

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() in {"postgresql", "postgres"}

    def uses_dev_secret(self) -> bool:
        return self.jwt_secret.get_secret_value() == DEV_SECRET

    def check(self) -> None:
        """Refuse settings that are unsafe in production."""
        if self.environment == "production" and (
            self.uses_dev_secret() or self.index_key.get_secret_value() == DEV_INDEX_KEY
        ):
            raise ValueError(
                "Set COMPLAINTS_JWT_SECRET and COMPLAINTS_INDEX_KEY (or "
                "COMPLAINTS_ENVIRONMENT=development to use the published development secrets "
                "on your own machine)."
            )
        backend = self.url.get_backend_name()
        if backend not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
