"""Workflow 3, proactive detection (next): health metrics, volume spikes, error codes and clusters of
similar cases, each one an alert with its evidence."""
