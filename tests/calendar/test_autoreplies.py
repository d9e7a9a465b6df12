"""Automatic replies through Graph's mailboxSettings, adapter against the stand-in over TLS:
the round trip, dates on both sides of the Europe/London clock changes, Graph's validation
and permissions, and members' text never travelling as markup."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import httpx
import pytest

from gateway.calendar.zones import zone
from gateway.devstack.users import user
from gateway.errors import CalendarError, Forbidden
from gateway.graph import autoreplies, client
from gateway.graph.autoreplies import AutoReplies
from tests.calendar.rig import GraphRig

RW = "Calendars.ReadWrite MailboxSettings.ReadWrite User.Read"
LONDON = zone("Europe/London")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def test_new_mailbox_has_replies_off_with_a_schedule_in_utc(rig: GraphRig) -> None:
    r = rig.run(autoreplies.get_replies(rig.http(), rig.token(scp=RW)))
    assert r.status == "disabled" and r.audience == "all"
    assert r.start is not None and r.end is not None and r.end > r.start
    assert r.start.tzinfo is not None and r.start.utcoffset() == r.start.astimezone(
        LONDON).utcoffset()


@pytest.mark.parametrize(("start", "end", "start_utc", "end_utc"), [
    # Late March: from a GMT morning to a BST morning (clocks forward 28 March 2027).
    (at(2027, 3, 27, 9, 0), at(2027, 3, 29, 9, 0), datetime(2027, 3, 27, 9, tzinfo=UTC),
     datetime(2027, 3, 29, 8, tzinfo=UTC)),
    # Late October: from a BST morning to a GMT morning (clocks back 31 October 2027).
    (at(2027, 10, 30, 9, 0), at(2027, 11, 1, 9, 0), datetime(2027, 10, 30, 8, tzinfo=UTC),
     datetime(2027, 11, 1, 9, tzinfo=UTC)),
])
def test_schedule_across_a_clock_change_keeps_the_wall_times(
        rig: GraphRig, start: datetime, end: datetime, start_utc: datetime,
        end_utc: datetime) -> None:
    g, tok = rig.http(), rig.token(scp=RW)
    saved = rig.run(autoreplies.set_replies(g, tok, AutoReplies(
        "scheduled", "contactsOnly", "Away at conference.", "Out of the office.", start, end)))
    stored = rig.stand_in.mailbox.replies(rig_oid())
    assert stored["start"] == start_utc and stored["end"] == end_utc
    again = rig.run(autoreplies.get_replies(g, tok))
    for r in (saved, again):
        assert r.status == "scheduled" and r.audience == "contactsOnly"
        assert r.start == start and r.end == end
        assert r.start is not None and r.end is not None
        assert (r.start.hour, r.end.hour) == (9, 9)
        assert r.internal == "Away at conference." and r.external == "Out of the office."


def rig_oid() -> str:
    return user("member").oid


def test_members_text_goes_to_graph_escaped_and_comes_back_as_text(rig: GraphRig) -> None:
    g, tok = rig.http(), rig.token(scp=RW)
    text = "Back on <b>Monday</b> & \"soon\"\n<script>alert(1)</script>"
    rig.run(autoreplies.set_replies(g, tok, AutoReplies("alwaysEnabled", internal=text)))
    stored = rig.stand_in.mailbox.replies(rig_oid())["internalReplyMessage"]
    assert "<script>" not in stored and "<b>" not in stored and "&lt;script&gt;" in stored
    back = rig.run(autoreplies.get_replies(g, tok))
    assert back.status == "alwaysEnabled"
    assert back.internal == "Back on <b>Monday</b> & \"soon\"\n<script>alert(1)</script>"


def test_outlooks_html_message_is_read_as_text(rig: GraphRig) -> None:
    rig.stand_in.mailbox.replies(rig_oid())["internalReplyMessage"] = (
        "<html><body><p>Away</p><p>Call <a href='tel:1'>reception</a></p>"
        "<script>x()</script></body></html>")
    back = rig.run(autoreplies.get_replies(rig.http(), rig.token(scp=RW)))
    assert back.internal == "Away\n\nCall reception"


def _patch(rig: GraphRig, scp: str, body: object) -> httpx.Response:
    tok = rig.run(rig.token(scp=scp)(False))
    with httpx.Client(verify=ssl.create_default_context(cafile=rig.ca_file)) as c:
        return c.patch(rig.stand_in.base_url + "/v1.0/me/mailboxSettings", json=body,
                       headers={"Authorization": "Bearer " + tok})


@pytest.mark.parametrize("setting", [
    {"status": "scheduled"},
    {"status": "scheduled", "scheduledStartDateTime": {
        "dateTime": "2027-03-29T09:00:00", "timeZone": "Europe/London"}},
    {"status": "scheduled",
     "scheduledStartDateTime": {"dateTime": "2027-03-29T09:00:00", "timeZone": "UTC"},
     "scheduledEndDateTime": {"dateTime": "2027-03-29T10:00:00",
                              "timeZone": "GMT Standard Time"}},
])
def test_stand_in_refuses_a_schedule_without_both_dates_or_ending_first(rig: GraphRig,
                                                                         setting: object) -> None:
    # 10:00 BST on 29 March is 09:00 UTC: equal to the start, so not after it.
    r = _patch(rig, RW, {"automaticRepliesSetting": setting})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ErrorInvalidScheduledOofDuration"
    assert rig.stand_in.mailbox.replies(rig_oid())["status"] == "disabled"


def test_stand_in_refuses_unknown_values_and_zones(rig: GraphRig) -> None:
    assert _patch(rig, RW, {"automaticRepliesSetting": {"status": "on"}}).status_code == 400
    r = _patch(rig, RW, {"automaticRepliesSetting": {
        "status": "scheduled",
        "scheduledStartDateTime": {"dateTime": "2027-03-29T09:00:00", "timeZone": "Mars/Base"},
        "scheduledEndDateTime": {"dateTime": "2027-03-30T09:00:00", "timeZone": "UTC"}}})
    assert r.json()["error"]["code"] == "TimeZoneNotSupportedException"


def test_changing_needs_readwrite_and_reading_needs_a_mailbox_scope(rig: GraphRig) -> None:
    r = _patch(rig, "Calendars.ReadWrite MailboxSettings.Read",
               {"automaticRepliesSetting": {"status": "alwaysEnabled"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    with pytest.raises(Forbidden):
        rig.run(autoreplies.get_replies(rig.http(), rig.token(scp="Calendars.ReadWrite")))
    assert rig.stand_in.mailbox.replies(rig_oid())["status"] == "disabled"


def test_graph_refusal_surfaces_as_a_readable_error(rig: GraphRig) -> None:
    g, tok = rig.http(), rig.token(scp=RW)
    with pytest.raises(ValueError, match="schedule"):
        autoreplies.to_graph(AutoReplies("scheduled"), "Europe/London")
    body = autoreplies.to_graph(AutoReplies("scheduled", start=at(2027, 3, 29, 9),
                                            end=at(2027, 3, 29, 10)), "Europe/London")
    body["automaticRepliesSetting"]["scheduledEndDateTime"] = body[
        "automaticRepliesSetting"]["scheduledStartDateTime"]
    with pytest.raises(CalendarError, match="scheduled duration"):
        rig.run(client.send(g, tok, "PATCH", "me/mailboxSettings", json=body))
