"""The list rows rendered once per distinct row (issue 16, gateway.web.render.row_html): the
kept fragment changes with everything the row shows, and still escapes what it writes."""

from __future__ import annotations

from dataclasses import replace

from gateway.web.mailviews import Row
from gateway.web.render import row_html

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
