"""Built-in verticals, each in a package of its own, reached only through cells.agent.verticals."""
