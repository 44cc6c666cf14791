"""The knowledge text pipeline both planes share: extract (bytes -> blocks) -> chunker (blocks -> chunks)
-> embedder (the shared MiniLM vectors) -> scoring (cosine top-k, BM25 re-ranking, the "known"
threshold), and `local` (an in-memory index of files, for the embedded worker and tests).

The control plane stores and searches chunks in pgvector (control.knowledge); the embedded worker, which
has no database, indexes its demo files in memory with the same code, so both score alike.
"""
