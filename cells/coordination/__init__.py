"""How a cell's parts talk over NATS: slot assignment, call events and live call state."""
