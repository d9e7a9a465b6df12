"""Microsoft Graph beyond the calendar: the member's automatic replies and people search.
The wire policy (token, retries, error mapping) is the calendar adapter's
(``gateway.calendar.graph``), shared so both speak to Graph the same way."""
