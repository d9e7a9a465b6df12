"""The gateway's middlewares, pure ASGI, and the one path table they all read.

- ``paths``: what each path is (public, static, health, metrics, API, member) and every
  per-path decision (CSRF exemption, session read, gzip, JSON errors, usage counting).
- ``security``: security headers and the CSP nonce on every response.
- ``boundary``: escaped exceptions become a plain page, never a stack trace.
- ``gates``: body limit, session, CSRF, access gate, compression.

``gateway.app.create_app`` puts them in order. Import from the modules: ``paths`` has no
imports of the gateway's own, so anything (``gateway.health.history``) may read the table.
"""
