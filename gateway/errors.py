"""The gateway's one error tree. Services raise these; one handler in ``gateway.web`` renders
them as a page or JSON. Each carries the HTTP status and a message fit to show a member
(never a stack trace, a token or mail content).

    GatewayError (500)
    ├── BadRequest (400)
    │   └── PayloadTooLarge (413)
    ├── NotSignedIn (401)            -> the web layer sends the browser to sign-in
    │   ├── ReauthRequired (401)     token can no longer be refreshed
    │   └── ClaimsChallenge (401)    conditional access wants a sign-in with these claims
    │       └── ImapDisabled (401)   Exchange refused a still-valid token: IMAP off for the mailbox
    ├── BadApiKey (401)              API bearer key missing, unknown or revoked
    ├── Forbidden (403)
    │   ├── CsrfFailed (403)
    │   └── StaleSignIn (403)        an admin action needs a more recent sign-in
    ├── TooManyRequests (429)        a per-address limit on anonymous work
    ├── NotFound (404)
    ├── Conflict (409)
    ├── SignInFailed (400)           the Entra round trip failed (state, code, consent)
    └── UpstreamError (502)
        ├── UpstreamUnavailable (503) server down, timed out, throttled
        │   └── EntraUnavailable (503) Entra's passing fault (5xx, temporarily_unavailable)
        ├── MailError (502)           IMAP said NO/BAD
        ├── CalendarError (502)       Graph refused a calendar request (400 and the like)
        ├── SendRefused (502)         SMTP refused the message
        │   └── PartlyRefused (502)   sent, but some recipients refused (named)
        │   └── SmtpAuthDisabled (502) 535 5.7.139: SMTP AUTH is off for the mailbox
        ├── SendUncertain (503)       the message went to SMTP but no answer came back
        └── StoreUnavailable (503)
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    title = "Something went wrong"
    default_message = "The gateway could not complete that. Please try again."

    # Seconds a client should wait before trying again (the Retry-After header), if any.
    default_retry_after: int | None = None

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after
        super().__init__(self.message)


class BadRequest(GatewayError):
    status = 400
    title = "That request could not be understood"
    default_message = "The request was not valid."


class PayloadTooLarge(BadRequest):
    status = 413
    title = "Too large"
    default_message = "That is larger than the gateway accepts."


class NotSignedIn(GatewayError):
    status = 401
    title = "Please sign in"
    default_message = "Your session has ended. Please sign in again."


class ReauthRequired(NotSignedIn):
    default_message = "Your sign-in has expired. Please sign in again."


class ImapDisabled(ReauthRequired):
    """Exchange refused the XOAUTH2 login of a token that has not expired.

    Exchange answers every refused login with the same ``NO AUTHENTICATE failed.``
    (MicrosoftDocs/office-developer-exchange-docs#87, MailKit#690, imapsync#250), whether the
    token is bad or IMAP is turned off for the mailbox (``Set-CASMailbox -ImapEnabled
    $false``, or no consent for ``IMAP.AccessAsUser.All``). A token Entra issued and that
    is still within its lifetime points at the mailbox, not the sign-in. It stays a
    ``ReauthRequired`` so that one fresh sign-in is tried; when that fails the same way the
    web layer names the fault instead of looping."""

    title = "Mail access is turned off"
    default_message = ("Mail access (IMAP) is turned off for your mailbox, or the gateway is "
                       "not allowed to use it. ICT has been told; they need to turn it on.")


class ClaimsChallenge(NotSignedIn):
    """Conditional access answered a silent token request with ``interaction_required`` and a
    ``claims`` challenge (AADSTS50076/50079/53003): the member must sign in again *with those
    claims* (msal's ``claims_challenge``), then comes back to the page they were on."""

    default_message = "Your organisation asks you to confirm your sign-in. Please sign in again."

    def __init__(self, claims: str, message: str | None = None) -> None:
        super().__init__(message)
        self.claims = claims


class BadApiKey(GatewayError):
    # Not a NotSignedIn: a bad key must never end a browser session that came along.
    status = 401
    title = "API key refused"
    default_message = "A valid API key is required: Authorization: Bearer <key>."


class Forbidden(GatewayError):
    status = 403
    title = "Not allowed"
    default_message = "You are not allowed to do that."


class CsrfFailed(Forbidden):
    title = "Please try again"
    default_message = ("This form had expired or did not come from the gateway. "
                       "Go back, reload the page and try again.")


class StaleSignIn(Forbidden):
    title = "Please sign in again"
    default_message = "Changing the failover switch needs a recent sign-in. Sign in again."


class TooManyRequests(GatewayError):
    """An address (or everyone together) used up a limit on anonymous work
    (gateway.auth.throttle)."""

    status = 429
    title = "Too many requests"
    default_message = "Too many attempts from your address just now. Wait a minute and try again."
    default_retry_after = 60


class NotFound(GatewayError):
    status = 404
    title = "Not found"
    default_message = "There is nothing here."


class MethodNotAllowed(GatewayError):
    status = 405
    title = "Not allowed"
    default_message = "That action is not available here."


class Conflict(GatewayError):
    status = 409
    title = "Changed meanwhile"
    default_message = "Something changed meanwhile. Reload and try again."


class SignInFailed(GatewayError):
    status = 400
    title = "Sign-in did not complete"
    default_message = "Sign-in did not complete. Please start again."


class UpstreamError(GatewayError):
    status = 502
    title = "Exchange did not answer as expected"
    default_message = "The mail service did not answer as expected. Please try again."


class UpstreamUnavailable(UpstreamError):
    status = 503
    default_retry_after = 30
    title = "Service unavailable"
    default_message = "The mail service cannot be reached just now. Please try again shortly."


class EntraUnavailable(UpstreamUnavailable):
    """Entra answered with a passing fault (HTTP 5xx, ``temporarily_unavailable``) or could
    not be reached: the session stays, the member is asked to try again in a minute."""

    title = "Sign-in service busy"
    default_message = ("Microsoft's sign-in service is having a problem just now. Please try "
                       "again in a minute.")
    # When the member's session is fine and only a token refresh failed.
    SIGNED_IN = ("Microsoft's sign-in service is having a problem just now. You are still "
                 "signed in: please try again in a minute.")

    def __init__(self, message: str | None = None, *, retry_after: int | None = 60) -> None:
        super().__init__(message, retry_after=retry_after)


class MailError(UpstreamError):
    default_message = "The mailbox refused that request."


class CalendarError(UpstreamError):
    title = "The calendar refused that"
    default_message = "Exchange refused that calendar request."


class SendRefused(UpstreamError):
    title = "Not sent"
    default_message = "The mail server refused the message. It has been kept; please try again."


class PartlyRefused(SendRefused):
    """The server took the message for some recipients and refused others (RCPT refusals
    after at least one was accepted): it HAS been sent. ``refused`` names each refused
    address with the server's words, so the member can send again to those only."""

    title = "Not sent to everyone"

    def __init__(self, refused: list[tuple[str, str]]) -> None:
        self.refused = refused
        names = ", ".join(addr for addr, _ in refused)
        super().__init__(f"Sent, but not to {names}: the mail server refused "
                         f"{'that address' if len(refused) == 1 else 'those addresses'}.")


class SmtpAuthDisabled(SendRefused):
    """``535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the
    Mailbox``: SMTP AUTH is off for this mailbox or tenant (the default for tenants created
    since 2020). Not a sign-in problem: signing in again cannot fix it; ICT can
    (``Set-CASMailbox -SmtpClientAuthenticationDisabled $false``)."""

    title = "Sending is turned off"
    default_message = ("Sending from the gateway (SMTP AUTH) is turned off for your mailbox. "
                       "ICT has been told; they need to turn it on. Your message has been kept.")


class SendUncertain(UpstreamUnavailable):
    """The whole message reached the SMTP server, but its answer never came: it may have
    been sent. Never retried blindly (gateway.mail.sender checks Sent Items first)."""

    title = "Perhaps sent"
    default_message = ("The mail server took the message but did not confirm it, so it may "
                       "have been sent. It is kept in your Outbox: look in Sent Items before "
                       "sending it again.")


class StoreUnavailable(UpstreamError):
    status = 503
    default_retry_after = 30
    title = "Service unavailable"
    default_message = "The gateway's store is unavailable. Please try again shortly."
