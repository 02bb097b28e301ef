"""Metric thresholds: the defaults file (METRIC_THRESHOLDS_PATH), writing it into the database, and the
status of a value against a metric's thresholds. Every metric is "higher is worse"."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import asyncpg
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from db import metrics as metrics_db
from db.pool import transaction

# Names and services appear in alert titles and in Slack: a plain charset keeps them unambiguous.
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")]
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]

MetricStatus = Literal["normal", "warning", "critical"]


class ThresholdsError(ValueError):
    pass


def check_order(warning: float | None, critical: float | None) -> None:
    if warning is not None and critical is not None and warning > critical:
        raise ValueError(f"the warning threshold ({warning:g}) is above the critical one ({critical:g})")


class DefaultThreshold(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    warning: FiniteNumber | None = None
    critical: FiniteNumber | None = None
    unit: str | None = Field(default=None, max_length=32)
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _usable(self) -> DefaultThreshold:
        if self.warning is None and self.critical is None:
            raise ValueError("give warning, critical or both")
        check_order(self.warning, self.critical)
        return self


class ThresholdDefaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    metrics: dict[MetricName, DefaultThreshold]


def status_of(value: float, warning: float | None, critical: float | None) -> MetricStatus:
    """A value's status; 'normal' when the metric has no thresholds at all."""
    if critical is not None and value >= critical:
        return "critical"
    if warning is not None and value >= warning:
        return "warning"
    return "normal"


def load_threshold_defaults(path: Path) -> ThresholdDefaults:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdsError(f"metric thresholds file {path} does not exist (METRIC_THRESHOLDS_PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThresholdsError(f"{path}: cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{path}: not valid YAML: {exc}") from None
    try:
        return ThresholdDefaults.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ThresholdsError(f"{path}: {where}: {first['msg']}") from None


async def install_threshold_defaults(pool: asyncpg.Pool, path: Path) -> int:
    """Write the defaults file into metric_thresholds, leaving pushed thresholds alone; how many
    metrics have defaults. Raises ThresholdsError on a bad file, before writing anything."""
    defaults = load_threshold_defaults(path)
    pairs = {name: metrics_db.ThresholdPair(d.warning, d.critical) for name, d in defaults.metrics.items()}
    async with transaction(pool) as conn:
        await metrics_db.replace_default_thresholds(conn, pairs)
    return len(pairs)
