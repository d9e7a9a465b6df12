"""Tests of health, probes, the canary and logging."""
