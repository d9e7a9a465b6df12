"""Tests of the dev stack's stand-ins and servers."""
