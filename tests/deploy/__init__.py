"""Tests of the deploy kit, TLS and several instances sharing one store."""
