"""Fault tests: hostile input, failing servers and expired sessions."""
