"""decisionlog."""
