"""`cx metrics push`: send health metric points to the metrics webhook, as a monitoring system would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from bot.cli.common import UsageError, command, settings_from_env
from bot.cli.signed_post import post_signed, read_json_file, webhook_secret
from pipelines.detection.metric_points import MetricsRequest

metrics_app = typer.Typer(help="Health metrics for proactive detection.", no_args_is_help=True)


def _where(loc: tuple[int | str, ...]) -> str:
    """`metrics[3].value` for a point's field, as the file is written."""
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    return "".join(parts).lstrip(".") or "the body"


@metrics_app.command("push")
@command
async def metrics_push(
    path: Annotated[Path, typer.Argument(help='a JSON body: {"metrics": [{"name", "value", ...}]}')],
    url: Annotated[str, typer.Option(help="the metrics endpoint")] = "http://127.0.0.1:8080/webhooks/metrics",
) -> int:
    """Sign a JSON body of metric points with WEBHOOK_SECRET and POST it to the metrics webhook.

    Each point: name, value, and optionally unit, service, recorded_at (ISO 8601 with a time zone;
    default: when it arrives), threshold_warning and threshold_critical (which replace the metric's
    thresholds). At most 1,000 points per request."""
    secret = webhook_secret(settings_from_env())
    body, data = read_json_file(path)
    # Checked here too, so a bad file is named with its point before anything is sent.
    try:
        MetricsRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UsageError(f"{path}: {_where(errors[0]['loc'])}: {errors[0]['msg']}{more}") from None
    return await post_signed(secret, url, body)
