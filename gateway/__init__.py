"""The failover mail gateway: a secure web mail proxy for Exchange Online."""

__version__ = "0.1.0"
