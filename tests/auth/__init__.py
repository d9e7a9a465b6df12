"""Tests of gateway/auth: sign-in through Entra ID, sessions and their cache, sign-in blockers."""
