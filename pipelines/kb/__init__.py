"""Workflow 2, the knowledge base: articles read from files or Confluence, chunked, embedded, and
searched (vectors and full text fused by rank)."""
