"""Persistence: every SQL statement, spoken in domain terms."""
