"""Typed models at the pipeline boundaries: what comes in, what triage says, where a case goes."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator
from pydantic.networks import validate_email

Severity = Literal["critical", "high", "medium", "low"]

# Cases get short ids (CX-1001, …) from a bigint sequence: a longer number cannot be one.
SHORT_ID_MAX = 2**63 - 1
Sentiment = Literal["negative", "neutral", "positive"]


@lru_cache(maxsize=65_536)
def checked_email(value: str) -> str:
    """EmailStr's own check and normalisation, once per address: customers write again and again,
    and the check costs more than the rest of an intake request's validation together."""
    return validate_email(value)[1]


CustomerEmail = Annotated[str, AfterValidator(checked_email)]


class IntakeRequest(BaseModel):
    """The body of POST /webhooks/intake."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_email: CustomerEmail
    customer_name: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=500)
    description: str = Field(min_length=1, max_length=20_000)
    severity: Severity | None = None
    product: str | None = Field(default=None, max_length=100)
    product_version: str | None = Field(default=None, max_length=100)
    environment: str | None = Field(default=None, max_length=100)
    channel: Literal["webhook", "web_portal", "api", "chat", "phone"] = "webhook"
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    callback_url: AnyHttpUrl | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callback_url")
    @classmethod
    def _https_only(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and value.scheme != "https":
            raise ValueError("callback_url must use https")
        return value


class IntakeOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"  # the same external id or message id was seen before: nothing new
    APPENDED = "appended"  # a follow-up added to an existing case
    SKIPPED = "skipped"


class Intake(BaseModel):
    outcome: IntakeOutcome
    case_id: UUID | None = None
    short_id: int | None = None
    status: str | None = None
    reason: str | None = None


class TriageResult(BaseModel):
    """What a triager says about a case. Labels are checked against the taxonomy before storing."""

    model_config = ConfigDict(frozen=True)

    category: str
    subcategory: str | None
    priority: Severity
    sentiment: Sentiment = "neutral"
    language: str = Field(default="en", min_length=2, max_length=8)
    summary: str = Field(default="", max_length=400)
    error_codes: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(default="", max_length=1000)
    triager: str
    model: str
    prompt_version: str | None = None


class Route(StrEnum):
    HUMAN_URGENT = "human_urgent"  # critical or VIP unhappy: a person now, alert posted
    SELF_SERVICE = "self_service"  # drafting, may auto-send
    REVIEW = "review"  # AI draft, then a reviewer
    HUMAN = "human"  # low confidence: a person, review card without a draft


class RouteDecision(BaseModel):
    route: Route
    reason: str
