"""Tests of the ``gateway`` command line."""
