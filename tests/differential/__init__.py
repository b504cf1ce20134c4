"""Differential testing against Django's DiscoverRunner (#19).

Hypothesis generates small Django test suites (:mod:`.spec`,
:mod:`.strategies`), :mod:`.project` writes each into a temporary project,
:mod:`.running` runs it under DiscoverRunner and under ours, and
:mod:`.oracle` compares what the two reported. ``python -m
tests.differential --help`` runs a longer hunt; ``tests/test_differential.py``
runs a fixed budget in CI.
"""
