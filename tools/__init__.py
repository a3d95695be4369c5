"""Developer tools that live outside the package (run from the repository root: python -m tools.X)."""
