"""Tests of the evidence: audit trail, history, reports and their signatures."""
