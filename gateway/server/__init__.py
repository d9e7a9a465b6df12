"""Serving HTTP: production TLS (``tls``), the development CA (``certs``) and what one
connection may cost the gateway (``limits``)."""
