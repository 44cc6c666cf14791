"""`autospeak bench knowledge`: retrieval quality of the knowledge base on the demo agents' questions."""
