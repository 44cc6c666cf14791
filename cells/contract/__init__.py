"""The published contract between the cells (workers) and the control plane: what both may import."""
