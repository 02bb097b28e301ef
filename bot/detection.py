"""Detection wired from the settings: its thresholds and windows, and one pass with this process's
embedder, posting to Slack and asking Claude only where they are configured."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from bot.settings import Settings
from pipelines.detection.run import DetectConfig, DetectReport, run_detection
from pipelines.detection.signals import Thresholds
from pipelines.detection.thresholds import install_threshold_defaults
from pipelines.ports import Embedder


def detect_config(settings: Settings) -> DetectConfig:
    return DetectConfig(
        window=timedelta(minutes=settings.detect_window_minutes),
        cluster_window=timedelta(hours=settings.cluster_window_hours),
        thresholds=Thresholds(z=settings.volume_z, min_count=settings.volume_min_count,
                              error_code_min_count=settings.error_code_min_count,
                              cluster_min_size=settings.cluster_min_size),
        resolve_after=timedelta(minutes=settings.alert_resolve_after_minutes),
        repeat_after=timedelta(hours=settings.alert_repeat_hours),
        similarity=settings.cluster_similarity,
        # A pass runs every DETECT_INTERVAL_MINUTES: seeds reach back two intervals (and at least
        # the window), so a late pass still sees every case as a seed once.
        seed_window=max(timedelta(minutes=2 * settings.detect_interval_minutes),
                        timedelta(minutes=settings.detect_window_minutes)),
    )


def posts_to_slack(settings: Settings) -> bool:
    return settings.slack_bot_token is not None


def summarises(settings: Settings) -> bool:
    return settings.anthropic_api_key is not None


async def detect(pool: asyncpg.Pool, settings: Settings, now: datetime, embedder: Embedder | None) -> DetectReport:
    """One pass, the scheduled job's or `cx detect run`'s: the thresholds file's defaults first, so
    points stored without thresholds are judged by them even where no web role ever ran."""
    await install_threshold_defaults(pool, settings.metric_thresholds_path)
    return await run_detection(pool, detect_config(settings), now, embedder,
                               post=posts_to_slack(settings), summarise=summarises(settings))
