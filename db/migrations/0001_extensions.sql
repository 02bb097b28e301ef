-- pgvector for KB chunks, labelled examples and case embeddings.
-- A server without it fails here, and bot/database.py turns that into a clear message.
CREATE EXTENSION IF NOT EXISTS vector;
