"""The gateway's settings: the table of every setting (``fields``), one typed dataclass per
section (``sections``), and loading them from TOML plus ``GATEWAY_*`` environment variables
into one frozen ``Settings`` (``settings``). Read them typed: ``settings.imap.host``."""

from gateway.config.fields import ENV_PREFIX, FIELDS, ConfigError, Field
from gateway.config.sections import check_sections
from gateway.config.settings import Settings, load_settings

check_sections()

__all__ = ["ENV_PREFIX", "FIELDS", "ConfigError", "Field", "Settings", "load_settings"]
