"""LLM adapters. Modules here import their vendor SDK, so import them only through the registry."""
