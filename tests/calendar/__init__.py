"""Tests of the calendar, automatic replies and people search against the Graph stand-in."""
