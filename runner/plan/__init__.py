"""The pure planning core: SQL text in, a Plan out. No network, no database."""
