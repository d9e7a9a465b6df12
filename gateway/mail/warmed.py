"""The inbox page begun at sign-in, and its one hand-over to the page that follows.

The sign-in callback starts ``begin`` on the member's pooled connection
(``gateway.mail.imap_pool.ImapPool.warm``) while the browser follows its redirect. The page
that follows takes the connection once ``begin`` has ended and, through ``folder_page``, is
handed what it built after one NOOP, rather than a NOOP and a FETCH of every row's flags: a
round trip to Exchange spent on flags at most ``FRESH_SECONDS`` old. The NOOP still brings
news: mail come or gone, or a flag another app changed (an untagged FETCH), clears the
connection's folder list (``ImapConn.folder_cache``), which ``begin`` noted, and so does any
change made through the connection; the page is then asked for as usual, as it is when the
built one is older than that or the page is not the inbox's first. It is handed over once.
"""

from __future__ import annotations

import time

from gateway.mail import mailbox
from gateway.mail.imap import ImapConn

# How old the sign-in's page may be when handed over: a slow mobile network's redirect and
# TLS resumption are well inside it; a member who signed in and looked away is not.
FRESH_SECONDS = 10.0


async def begin(conn: ImapConn) -> None:
    """The inbox's first page with the folder list, built and kept on the connection."""
    built = await mailbox.folders_and_page(conn, "INBOX")
    conn.warmed = (time.monotonic(), conn.folder_cache, built)


async def folder_page(conn: ImapConn, folder: str, page: int = 1
                      ) -> tuple[list[mailbox.Folder], mailbox.Page]:
    """``mailbox.folders_and_page``, or the page ``begin`` built when it still holds."""
    warmed, conn.warmed = conn.warmed, None
    raw = mailbox.mailbox_arg(folder)
    if warmed is not None and folder == "INBOX" and page == 1 and conn.selected == raw:
        when, cache, built = warmed
        if time.monotonic() - when < FRESH_SECONDS:
            # The page's one NOOP (ImapConn.select on the selected folder): news since
            # (mail come, gone, or flags changed elsewhere) clears the folder list, and
            # the page is then asked for as usual.
            await conn.select(raw)
            if cache is not None and conn.folder_cache is cache:
                handed: tuple[list[mailbox.Folder], mailbox.Page] = built
                return handed
    return await mailbox.folders_and_page(conn, folder, page)
