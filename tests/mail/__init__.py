"""Tests of the mail part: IMAP, MIME, sanitising and sending."""
