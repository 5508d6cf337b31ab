"""Staged rollouts: deterministic cohorts, health gates from telemetry, automatic rollback, A/B and shadow."""
