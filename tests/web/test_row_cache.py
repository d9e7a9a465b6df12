"""The list rows rendered once per distinct row (issue 16, gateway.web.render.row_html): the
kept fragment changes with everything the row shows, and still escapes what it writes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.mail.mailbox import Folder, MessageSummary
from gateway.web.mailviews import Row
from gateway.web.render import folders_html, list_html, move_html, pane_html, row_html

ROW = Row(uid=7, url="/mail/read?f=INBOX&uid=7", sender="Ann <ann@x>",
          subject="<script>alert(1)</script>", date="14:05", unread=True, flagged=False,
          answered=False, has_attachment=False, size="2 KB", preview="Papers & plans")


def test_row_fragment_escapes_and_follows_each_field() -> None:
    """Markup is escaped; a change of flag, folder (URL), date, preview or tick box gives a
    different fragment, and the same row gives the same one."""
    html = str(row_html(ROW, True))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Papers &amp; plans" in html and 'class="row unread"' in html
    assert 'value="7"' in html
    assert str(row_html(replace(ROW), True)) == html
    for changed in (replace(ROW, unread=False), replace(ROW, flagged=True),
                    replace(ROW, url="/mail/read?f=Archive&uid=7"), replace(ROW, date="27 Nov"),
                    replace(ROW, preview="other")):
        assert str(row_html(changed, True)) != html
    assert 'type="checkbox"' not in str(row_html(ROW, False))
    assert 'class="row"' in str(row_html(replace(ROW, unread=False), True))


# A folder page's rows kept by the identity of its summaries (gateway.web.render.list_html).
LONDON = ZoneInfo("Europe/London")


def _summary(uid: int, received: datetime, **kw: Any) -> MessageSummary:
    fields: dict[str, Any] = {"subject": f"Item {uid} <b>", "sender": "Ann", "sender_email":
                              "ann@x", "date": received, "unread": False, "flagged": False,
                              "answered": False, "has_attachment": False, "size": 2048,
                              "received": received, **kw}
    return MessageSummary(uid=uid, **fields)


def test_the_kept_list_is_the_same_only_for_the_same_summaries_folder_and_day() -> None:
    """The same summary objects on the same local day give the kept markup; a summary
    replaced (its flags changed), another folder, Drafts, or the next day in the member's
    zone gives new markup that shows the change. Dates on both sides of the October clock
    change (Europe/London, 25 October 2026 at 02:00 BST)."""
    before = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)      # 00:30 BST on the 25th
    after = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)        # 12:00 GMT on the 25th
    msgs = [_summary(2, after), _summary(1, before, unread=True)]
    now = datetime(2026, 10, 25, 18, 0, tzinfo=UTC)
    html = list_html("INBOX", msgs, LONDON, now, drafts=False)
    # Both are on Sunday the 25th in London, one each side of the change: one heading.
    assert str(html).count('<h2 class="day"') == 1 and "Today" in html
    assert "Item 2 &lt;b&gt;" in html and "<b>" not in html
    assert 'class="row unread"' in html
    assert list_html("INBOX", list(msgs), LONDON, now, drafts=False) is html

    read = [msgs[0], replace(msgs[1], unread=False)]
    changed = list_html("INBOX", read, LONDON, now, drafts=False)
    assert changed is not html and 'class="row unread"' not in changed

    elsewhere = list_html("Archive", msgs, LONDON, now, drafts=False)
    assert "f=Archive" in elsewhere and "f=INBOX" not in elsewhere
    assert "mode=draft" in list_html("Drafts", msgs, LONDON, now, drafts=True)

    # After midnight in London the same messages are yesterday's.
    tomorrow = list_html("INBOX", msgs, LONDON, datetime(2026, 10, 26, 0, 30, tzinfo=UTC),
                         drafts=False)
    assert "Yesterday" in tomorrow and "Today" not in tomorrow
    # 23:30 UTC on 25 October is still the 25th in London in winter (GMT): still today.
    late = list_html("INBOX", msgs, LONDON, datetime(2026, 10, 25, 23, 30, tzinfo=UTC),
                     drafts=False)
    assert late is html


def test_the_pane_marks_only_the_open_message() -> None:
    """The list beside a message is kept like the folder's; the open one's link alone gets
    aria-current, even when another message's subject spells the mark's text."""
    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)      # the first day of BST
    msgs = [_summary(8, now, subject='#p-7"> trap'), _summary(7, now)]
    html = str(pane_html("INBOX", msgs, LONDON, now, drafts=False, current=7))
    assert html.count("aria-current") == 1
    assert 'uid=7#p-7" aria-current="true">' in html
    assert "#p-7&#34;&gt; trap" in html
    other = str(pane_html("INBOX", msgs, LONDON, now, drafts=False, current=8))
    assert other.count("aria-current") == 1 and 'uid=8#p-8" aria-current="true">' in other


# The folder list and the "Move to" choice kept by the identity of the connection's folder
# list (gateway.web.render.folders_html, move_html).
def _folders(unseen: int) -> list[Folder]:
    return [Folder(name="INBOX", label="Inbox", depth=0, special="inbox", total=9,
                   unseen=unseen, selectable=True),
            Folder(name="Plans & <Ideas>", label="Plans & <Ideas>", depth=0, special=None,
                   total=2, unseen=0, selectable=True),
            Folder(name="Archive/2026", label="2026", depth=1, special=None, total=0,
                   unseen=0, selectable=True),
            Folder(name="Archive", label="Archive", depth=0, special="archive", total=0,
                   unseen=0, selectable=False)]


def test_the_kept_folder_list_follows_the_list_the_folder_and_the_page() -> None:
    """The same folder list gives the kept markup; the list asked for again (another unread
    count), another folder shown or another page gives new markup that shows it. Names are
    escaped, and a folder that cannot hold mail is neither linked nor offered."""
    folders = _folders(3)
    html = folders_html(folders, "INBOX", "/mail")
    assert folders_html(folders, "INBOX", "/mail") is html
    assert 'aria-label="3 unread"' in html and "Plans &amp; &lt;Ideas&gt;" in html
    assert "<Ideas>" not in html and 'href="/mail?f=Archive"' not in html
    assert html.count('aria-current="page"') == 1
    assert 'href="/mail?f=INBOX" aria-current="page"' in html
    again = folders_html(_folders(4), "INBOX", "/mail")
    assert again is not html and 'aria-label="4 unread"' in again
    other = folders_html(folders, "Archive/2026", "/mail")
    assert 'href="/mail?f=Archive%2F2026" aria-current="page"' in other
    assert 'href="/mail?f=INBOX" aria-current' not in other
    outbox = folders_html(folders, "INBOX", "/mail/outbox")
    assert 'href="/mail/outbox" aria-current="page"' in outbox
    assert 'href="/mail/outbox" aria-current' not in html


def test_the_kept_move_choice_offers_every_other_folder() -> None:
    folders = _folders(0)
    html = move_html(folders, "INBOX")
    assert move_html(folders, "INBOX") is html
    assert re.findall(r'<option value="([^"]*)"', html) == [
        "", "Plans &amp; &lt;Ideas&gt;", "Archive/2026"]
    assert re.findall(r'<option value="([^"]*)"', move_html(folders, "Archive/2026")) == [
        "", "INBOX", "Plans &amp; &lt;Ideas&gt;"]
    assert move_html([folders[0]], "INBOX") == ""
