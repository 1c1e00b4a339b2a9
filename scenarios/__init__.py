"""Scenario data: readers for the on-disk dataset formats and the continual-learning streams."""
