"""The knowledge base: documents a tenant uploads, cut into chunks, embedded offline, searched per turn.

extract (bytes -> blocks) -> chunker (blocks -> chunks) -> embedder (MiniLM vectors) -> store (pgvector)
-> search (question -> top chunks with scores, or "not known" below the threshold).
"""
