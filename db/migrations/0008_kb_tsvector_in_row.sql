-- A chunk's tsvector stays in its row. Full-text search reads it for every candidate; stored out
-- of line, as the embedding and the text pushed 87% of them at 100k chunks, each read was a TOAST
-- index probe and more pages (full-text search p50 11 → 6 ms). MAIN still compresses it if a row
-- would not otherwise fit.
ALTER TABLE kb_chunks ALTER COLUMN tsv SET STORAGE MAIN;
