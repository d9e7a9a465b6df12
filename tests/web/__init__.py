"""Tests of the web pages, in Chromium, WebKitGTK and over plain HTTP."""
