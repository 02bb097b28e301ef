"""What `cx run` runs on: the database (DATABASE_URL or the embedded PostgreSQL), the durable job
worker, the scheduler that only enqueues, logging and Prometheus metrics."""
