"""The Python objects behind the PJRT C handles (see docs/architecture.md)."""
