"""Tests of the failover switch, its audit trail and notifications."""
