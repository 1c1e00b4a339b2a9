"""Structural-plasticity strategies as Avalanche plugins (Dense, Grow, Prune, DYNO, interventions)."""
