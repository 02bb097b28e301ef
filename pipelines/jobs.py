"""The names of durable jobs, shared by whoever enqueues them and the worker that runs them."""

from __future__ import annotations

from enum import StrEnum


class JobName(StrEnum):
    PRUNE = "maintenance.prune"
    TRIAGE = "case.triage"
    GMAIL_SYNC = "gmail.sync"
    DRAFT = "case.draft"  # self-service and review drafts
    REVIEW_CARD = "case.review_card"  # the Slack issue posts these
    URGENT_ALERT = "case.urgent_alert"  # the Slack issue posts these to the alerts channel
    SEND_REPLY = "reply.send"
    REVIEW_ACTION = "review.action"  # a reviewer's click on a review card
    REVIEW_SLA = "review.sla"  # reminders and timeouts of pending reviews, every minute
    SLACK_CASE = "slack.create_case"  # the "Create support case" message shortcut's job
