"""The one settings object: read from the environment and `.env`, validated before anything starts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.privacy.policy import PiiPolicy
from pipelines.privacy.redaction import Pattern, parse_patterns
from pipelines.retention import RetentionPolicy

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """Raised with one line per bad variable, so the CLI can print them all at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    # Storage. Without DATABASE_URL an embedded PostgreSQL runs in CX_DATA_DIR/pg.
    database_url: SecretStr | None = None
    cx_data_dir: Path = Path(".cx-data")
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=2)
    # Backups (README "Operating it"): `cx db backup` and the nightly job at BACKUP_HOUR (TIMEZONE)
    # write pg_dump archives cx-YYYYmmdd-HHMMSS.dump (UTC) to BACKUP_DIR (default CX_DATA_DIR/backups);
    # the nightly job then keeps the newest BACKUP_KEEP of them. With DATABASE_URL, pg_dump, pg_restore
    # and psql come from PG_BIN_DIR, else from PATH; the embedded server uses the wheel's own.
    backup_dir: Path | None = None
    backup_keep: int = Field(default=7, ge=1)
    backup_hour: int = Field(default=2, ge=0, le=23)
    backup_nightly: bool = True
    pg_bin_dir: Path | None = None

    # Process.
    port: int = Field(default=8080, ge=0, le=65535)
    # A process without the web role (a worker, the scheduler) keeps its job, triage and Slack metrics
    # in memory; with METRICS_PORT it serves them at GET /metrics there, for Prometheus to scrape.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    worker_concurrency: int = Field(default=8, ge=1)
    job_max_attempts: int = Field(default=5, ge=1)
    job_retry_base_seconds: float = Field(default=2.0, gt=0)
    job_heartbeat_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    # Slack.
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str | None = None
    slack_review_channel: str = "#support-review"
    slack_alerts_channel: str = "#support-alerts"
    slack_metrics_channel: str = "#support-metrics"
    slack_reviewer_group: str | None = None

    # AI.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-sonnet-4-6"
    anthropic_fast_model: str = "claude-haiku-4-5"
    anthropic_timeout_seconds: float = Field(default=60.0, gt=0)
    anthropic_max_retries: int = Field(default=2, ge=0)
    # Mark each step's stable prompt prefix for Anthropic's prompt cache. A write costs 1.25x, a read 0.1x,
    # and an entry lives 5 minutes: a desk whose calls are further apart pays the writes and reads nothing.
    anthropic_prompt_cache: bool = True
    # Work no one waits on (daily article drafts, summaries of warning-level alerts) goes as Message
    # Batches at half price; a batch not ended within BATCH_TIMEOUT_MINUTES is canceled and its calls
    # made directly.
    anthropic_batches: bool = True
    batch_timeout_minutes: int = Field(default=120, ge=1, le=24 * 60)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"
    embeddings: Literal["auto", "openai", "local", "none"] = "auto"
    local_embedding_model: str = "all-MiniLM-L6-v2"
    # A second, multilingual vector per KB chunk (Universal Sentence Encoder multilingual, in the
    # `local` extra) ranks the articles for a question not in English, next to the vectors above.
    multilingual_search: bool = True
    # Personal data replaced by placeholders before any AI provider sees it (README "Redaction").
    pii_redaction: bool = True
    # More types to redact, `NAME: regex;;NAME: regex` (group 1 if any is what is replaced).
    pii_extra_patterns: str | None = None

    # Gmail.
    gmail_credentials_file: Path | None = None
    gmail_token_file: Path | None = None
    gmail_api_url: str | None = None
    gmail_poll_seconds: int = Field(default=60, ge=5)
    # Mail loops (README "Operating it"): mail the desk took is labelled so people see it in the inbox
    # (empty: no label); one customer gets at most this many automatic replies in any 24 hours, and a
    # draft past it goes to review. 0 sends nothing automatically.
    gmail_processed_label: str = "CX/processed"
    auto_replies_per_customer_per_day: int = Field(default=5, ge=0)
    support_email: str | None = None
    leadership_email: str | None = None

    # Jira and Confluence.
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: SecretStr | None = None
    jira_project_key: str = "SUP"
    confluence_url: str | None = None
    confluence_email: str | None = None
    confluence_api_token: SecretStr | None = None
    confluence_space_key: str = "PKB"

    # Intake and routing.
    webhook_secret: SecretStr | None = None
    # Inbound limits on /webhooks/*, per web process (README "Operating it"): each route has a bucket
    # per source address and one per signing key. 0 turns them off; the burst defaults to the rate.
    webhook_rate_per_minute: int = Field(default=60, ge=0)
    webhook_rate_burst: int | None = Field(default=None, ge=1)
    # Reverse proxies in front of the web process: the source address is the N-th entry from the
    # right of X-Forwarded-For. 0: the TCP peer address, and X-Forwarded-For is ignored.
    webhook_trusted_proxies: int = Field(default=0, ge=0)
    company_name: str = "Northwind Bank"
    # Comma-separated customer tiers whose drafts always go to a reviewer, however confident.
    always_review_tiers: str = "enterprise"
    confidence_threshold_high: float = Field(default=0.85, ge=0, le=1)
    confidence_threshold_medium: float = Field(default=0.60, ge=0, le=1)
    review_timeout_hours: float = Field(default=2.0, gt=0)
    reopen_window_days: int = Field(default=7, ge=0)
    timezone: str = "UTC"
    daily_report_hour: int = Field(default=6, ge=0, le=23)
    taxonomy_path: Path = PROJECT_ROOT / "prompts" / "taxonomy.yaml"

    # Detection (workflow 3). README "Detection" says what each one changes.
    detect_interval_minutes: int = Field(default=15, ge=1, le=1440)
    detect_window_minutes: int = Field(default=60, ge=5, le=1440)  # "the last hour" of metrics, volume, codes
    metric_thresholds_path: Path = PROJECT_ROOT / "prompts" / "metric_thresholds.yaml"
    volume_z: float = Field(default=4.0, gt=0)
    volume_min_count: int = Field(default=5, ge=1)
    error_code_min_count: int = Field(default=3, ge=1)
    cluster_window_hours: float = Field(default=24.0, gt=0, le=168)
    cluster_min_size: int = Field(default=4, ge=2)
    cluster_similarity: float | None = Field(default=None, gt=0, lt=1)  # None: the embedding model's own
    alert_resolve_after_minutes: int = Field(default=120, ge=1)
    alert_repeat_hours: float = Field(default=4.0, gt=0)

    # Case lifecycle and CSAT. README "Lifecycle" says what each one changes.
    resolve_after_hours: float = Field(default=72.0, gt=0)  # customer silence after a reply
    public_url: str | None = None  # where customers reach GET /csat/{token}; None: no rating line
    csat_link_days: int = Field(default=14, ge=1)
    csat_secret: SecretStr | None = None  # signs rating links; falls back to WEBHOOK_SECRET

    # Daily learning (workflow 5). README "Daily report" says what each one changes.
    kb_gap_min_cases: int = Field(default=3, ge=2)
    kb_gap_max_score: float | None = Field(default=None, gt=0, lt=1)  # None: calibrated per search mode
    kb_drafts_per_day: int = Field(default=3, ge=0)
    bug_min_cases: int = Field(default=5, ge=2)
    bug_categories: str = "defect"  # comma-separated taxonomy categories whose clusters become Jira bugs
    retrain_min_new_examples: int = Field(default=200, ge=1)

    # Retention, applied by the daily maintenance job in batches. README "Operating it" gives each
    # default's reason. LLM usage stays at least 32 days: the monthly budgets read its detail rows.
    retention_search_log_days: int = Field(default=30, ge=1)
    retention_llm_usage_days: int = Field(default=90, ge=32)
    retention_executions_days: int = Field(default=30, ge=1)
    retention_slack_event_days: int = Field(default=7, ge=1)
    retention_job_log_days: int = Field(default=30, ge=2)

    @field_validator("database_url", mode="before")
    @classmethod
    def _postgres_scheme(cls, value: object) -> object:
        if isinstance(value, str) and value.startswith("postgres://"):
            return "postgresql://" + value.removeprefix("postgres://")
        if isinstance(value, str) and not value.startswith("postgresql://"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("pii_extra_patterns")
    @classmethod
    def _valid_patterns(cls, value: str | None) -> str | None:
        parse_patterns(value)  # a bad pattern stops the start, named, rather than failing per case
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.confidence_threshold_medium > self.confidence_threshold_high:
            raise ValueError(
                "CONFIDENCE_THRESHOLD_MEDIUM must not exceed CONFIDENCE_THRESHOLD_HIGH"
            )
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        # Refused at start rather than replies quietly going out without a rating line: whoever
        # set PUBLIC_URL asked for ratings, and would only learn otherwise from an empty CSAT.
        if self.public_url is not None and self.csat_secret is None and self.webhook_secret is None:
            raise ValueError("PUBLIC_URL needs CSAT_SECRET or WEBHOOK_SECRET to sign the rating links")
        return self

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(
            search_log=timedelta(days=self.retention_search_log_days),
            llm_usage=timedelta(days=self.retention_llm_usage_days),
            executions=timedelta(days=self.retention_executions_days),
            slack_events=timedelta(days=self.retention_slack_event_days),
            job_log=timedelta(days=self.retention_job_log_days),
        )

    @property
    def backup_directory(self) -> Path:
        return self.backup_dir if self.backup_dir is not None else self.cx_data_dir / "backups"

    @property
    def reopen_window(self) -> timedelta:
        return timedelta(days=self.reopen_window_days)

    @property
    def pii_patterns(self) -> tuple[Pattern, ...]:
        return parse_patterns(self.pii_extra_patterns)

    @property
    def pii_policy(self) -> PiiPolicy | None:
        # None: PII_REDACTION is off and customer text reaches the providers as written.
        return PiiPolicy(self.pii_patterns) if self.pii_redaction else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def defect_categories(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.bug_categories.split(",") if c.strip())

    @property
    def always_review(self) -> frozenset[str]:
        return frozenset(t.strip().lower() for t in self.always_review_tiers.split(",") if t.strip())

    @property
    def csat_key(self) -> str | None:
        """What signs and checks rating links: CSAT_SECRET, else WEBHOOK_SECRET."""
        return self.secret("csat_secret") or self.secret("webhook_secret")

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's errors into one line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            shown = "" if field == "settings" or _is_secret(field) else f" (got {given!r})"
            problems.append(f"{field.upper()}: {message}{shown}")
        raise SettingsError(problems) from None


def _is_secret(field: str) -> bool:
    annotation = Settings.model_fields.get(field)
    return annotation is not None and "SecretStr" in str(annotation.annotation)
