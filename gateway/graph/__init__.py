"""Microsoft Graph: the one client every Graph call goes through (``client``: token, retries
on Retry-After, error mapping, JSON, paging), and what the gateway reads and writes beyond the
calendar (``gateway.calendar.graph``): the member's automatic replies and people search."""
