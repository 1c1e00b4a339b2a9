"""Suite definitions and published reference figures (package data; figures are never used for tuning)."""
