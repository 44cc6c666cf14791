"""One regional cell's control plane: the REST API plus the carrier webhook and the event pipeline."""
