-- A second vector per knowledge-base chunk from a multilingual encoder (Universal Sentence Encoder
-- multilingual v3, 512 dimensions), so that a German or French question finds the English article
-- the deployment's own embedding model (English-only MiniLM) misses. NULL until computed, and
-- again after the chunk's text changed, exactly like `embedding`.
ALTER TABLE kb_chunks ADD COLUMN embedding_multilingual vector(512);

CREATE INDEX kb_chunks_embedding_multilingual_idx ON kb_chunks
    USING hnsw (embedding_multilingual vector_cosine_ops) WHERE embedding_multilingual IS NOT NULL;
