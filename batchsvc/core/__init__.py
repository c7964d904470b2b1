"""The batch domain: importable and testable without Flask."""
