"""The HTTP server of `cx run`: /healthz, /metrics and the signed webhooks, with JSON errors."""
