"""Customer replies, exactly once: an outbox row per draft, delivered by Gmail, a signed callback or
a Slack thread, with a lookup before any retried send."""
