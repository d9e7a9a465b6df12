"""Health: is every upstream working, and can ICT prove it afterwards?

- ``monitor``: background probes, cached results, the ``application/health+json`` document.
- ``probes``: one small async check per upstream (Entra, Graph, IMAP, SMTP, store).
- ``canary``: the mail-flow canary (a tagged message sent and watched for).
- ``platform``: the supplier's platform, watched from outside.
- ``history``: probe results and canary rounds written to the store for evidence.
- ``alerts``: telling ICT when an upstream fails and recovers.
- ``metrics``: the Prometheus registry and request-counting middleware.
"""
