"""The Graph adapter against the Graph stand-in, through the real httpx client over TLS."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.calendar import graph
from gateway.calendar.model import Event, EventDraft, days
from gateway.config import load_settings
from gateway.errors import (
    CalendarError,
    Forbidden,
    NotFound,
    ReauthRequired,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.graph.client import GraphHttp, member_token
from tests.calendar.rig import ANCHOR, GraphRig

LONDON = ZoneInfo("Europe/London")


def window(first: date, count: int) -> tuple[datetime, datetime]:
    start = datetime.combine(first, time(), LONDON)
    return start, datetime.combine(first + timedelta(days=count), time(), LONDON)


def view(rig: GraphRig, first: date = ANCHOR, count: int = 15, who: str = "member",
         **env: str) -> list[Event]:
    return rig.run(graph.calendar_view(rig.http(**env), rig.token(who), *window(first, count)))


def named(events: list[Event], prefix: str) -> Event:
    return next(e for e in events if e.subject.startswith(prefix))


def test_calendar_view_follows_every_page(rig: GraphRig) -> None:
    """Small pages are followed through @odata.nextLink until every event has arrived."""
    whole = view(rig, GATEWAY_GRAPH_PAGE_SIZE="1000")
    assert rig.stand_in.requests == 1
    rig.stand_in.requests = 0
    paged = view(rig, GATEWAY_GRAPH_PAGE_SIZE="3")
    assert rig.stand_in.requests == -(-len(whole) // 3) > 2
    assert [e.id for e in paged] == [e.id for e in whole]
    assert [e.start for e in paged] == sorted(e.start for e in paged)


def test_calendar_view_selects_only_what_lists_show(rig: GraphRig) -> None:
    """The list asks for no bodies or attendees; the event page gets them."""
    ev = named(view(rig), "Cabinet briefing")
    assert ev.body_html == "" and ev.attendees == ()
    full = rig.run(graph.get_event(rig.http(), rig.token(), ev.id))
    assert "budget" in full.body_html and len(full.attendees) == 3
    assert full.location == "Room 2, Town Hall"


def test_recurring_series_comes_as_occurrences(rig: GraphRig) -> None:
    """A weekly series arrives as occurrences of one master, each on its Saturday."""
    surgeries = [e for e in view(rig, count=28) if e.subject == "Ward surgery"]
    assert len(surgeries) == 4
    assert {e.kind for e in surgeries} == {"occurrence"}
    assert len({e.series_id for e in surgeries}) == 1 and surgeries[0].series_id
    for e in surgeries:
        local = e.start.astimezone(LONDON)
        assert local.weekday() == 5 and local.time() == time(10)


@pytest.mark.parametrize("before,after", [(date(2026, 10, 24), date(2026, 10, 31)),
                                          (date(2027, 3, 27), date(2027, 4, 3))])
def test_series_keeps_wall_time_across_clock_changes(
    rig: GraphRig, before: date, after: date,
) -> None:
    """The surgery stays at 10:00 UK time either side of a clock change; UTC moves."""
    events = view(rig, first=before, count=8)
    s1, s2 = [e for e in events if e.subject == "Ward surgery"]
    assert s1.start.astimezone(LONDON).time() == s2.start.astimezone(LONDON).time() == time(10)
    assert s2.start.astimezone(UTC).hour - s1.start.astimezone(UTC).hour == \
        (1 if before.month == 10 else -1)


@pytest.mark.parametrize("day,hours", [(date(2026, 10, 25), 4), (date(2027, 3, 28), 2)])
def test_event_spanning_the_clock_change_has_its_real_length(
    rig: GraphRig, day: date, hours: int,
) -> None:
    """00:30 to 03:30 on a clock-change night lasts four hours in October, two in March."""
    ev = named(view(rig, first=day, count=1), "Overnight gritting")
    assert ev.end - ev.start == timedelta(hours=hours)
    assert ev.start.astimezone(LONDON).strftime("%H:%M") == "00:30"
    assert ev.end.astimezone(LONDON).strftime("%H:%M") == "03:30"


def test_prefer_timezone_changes_labels_not_instants(rig: GraphRig) -> None:
    """Asking Graph for New York time gives the same instants as London time."""
    london = {e.id: e.start for e in view(rig)}
    rig.stand_in.requests = 0
    ny_http = rig.http(GATEWAY_GENERAL_TIMEZONE="America/New_York")
    resp = rig.run(ny_http.client.get("me/calendarView", params={
        "startDateTime": "2026-11-27T00:00:00Z", "endDateTime": "2026-11-28T00:00:00Z"},
        headers={"Authorization": "Bearer " + rig.run(rig.token()(False))}))
    assert resp.headers["Preference-Applied"] == 'outlook.timezone="America/New_York"'
    assert resp.json()["value"][0]["start"]["timeZone"] == "America/New_York"
    ny = rig.run(graph.calendar_view(ny_http, rig.token(), *window(ANCHOR, 15)))
    assert {e.id: e.start for e in ny} == london


def test_all_day_and_multi_day_events(rig: GraphRig) -> None:
    """All-day events are dates; a three-day conference appears on each of its days."""
    events = view(rig)
    council = named(events, "Full Council")
    assert council.all_day and council.first_day(LONDON) == council.last_day(LONDON) \
        == ANCHOR + timedelta(days=7)
    laid = days(events, ANCHOR, 15, LONDON, ANCHOR)
    conf = [d.date for d in laid if any(s.event.subject.startswith("LGA") for s in d.slots)]
    assert conf == [ANCHOR + timedelta(days=n) for n in (9, 10, 11)]


@pytest.mark.parametrize("answer,response,send", [("accept", "accepted", True),
                                                  ("tentative", "tentativelyAccepted", False)])
def test_accept_and_tentative(rig: GraphRig, answer: str, response: str, send: bool) -> None:
    """Accepting or tentatively accepting records the answer; the response goes only if asked."""
    g, tok = rig.http(), rig.token()
    inv = named(view(rig), "Scrutiny Committee")
    assert inv.needs_answer
    rig.run(graph.respond(g, tok, inv.id, answer, "Will be there", send))
    after = rig.run(graph.get_event(g, tok, inv.id))
    assert after.response == response and not after.needs_answer
    sent = [s for s in rig.stand_in.sent if s["event"] == inv.id]
    assert sent == ([{"oid": sent[0]["oid"], "event": inv.id, "kind": response,
                      "comment": "Will be there"}] if send else [])


def test_decline_removes_the_meeting(rig: GraphRig) -> None:
    """Declining sends the answer with its comment and takes the meeting off the calendar."""
    g, tok = rig.http(), rig.token()
    inv = named(view(rig), "Ward walkabout")
    rig.run(graph.respond(g, tok, inv.id, "decline", "Sorry, away", True))
    assert rig.stand_in.sent[-1]["kind"] == "declined"
    with pytest.raises(NotFound):
        rig.run(graph.get_event(g, tok, inv.id))


def test_respond_by_ical_uid(rig: GraphRig) -> None:
    """An invitation in mail is answered through its iCalendar UID."""
    g, tok = rig.http(), rig.token()
    inv = rig.run(graph.get_event(g, tok, named(view(rig), "Scrutiny").id))
    found = rig.run(graph.respond(g, tok, inv.ical_uid, "accept", by_ical_uid=True))
    assert found is not None and found.id == inv.id
    assert rig.run(graph.get_event(g, tok, inv.id)).response == "accepted"
    with pytest.raises(NotFound):
        rig.run(graph.respond(g, tok, "no-such-uid", "accept", by_ical_uid=True))


def test_answering_own_meeting_and_cancelling_others_are_refused(rig: GraphRig) -> None:
    """Graph's refusals come back as CalendarError carrying Graph's own words."""
    g, tok = rig.http(), rig.token()
    events = view(rig)
    with pytest.raises(CalendarError, match="meeting you organized"):
        rig.run(graph.respond(g, tok, named(events, "Cabinet").id, "accept"))
    with pytest.raises(CalendarError, match="need to be an organizer"):
        rig.run(graph.cancel_event(g, tok, named(events, "Planning").id, "no"))


def test_cancel_own_meeting(rig: GraphRig) -> None:
    """The organiser cancels with a comment; the meeting is gone and attendees are told."""
    g, tok = rig.http(), rig.token()
    mine = named(view(rig), "Cabinet briefing")
    rig.run(graph.cancel_event(g, tok, mine.id, "Postponed"))
    assert rig.stand_in.sent[-1] == {"oid": rig.stand_in.sent[-1]["oid"], "event": mine.id,
                                     "kind": "cancel", "comment": "Postponed"}
    assert all(e.id != mine.id for e in view(rig))


def test_create_edit_move_delete(rig: GraphRig) -> None:
    """An event made from the form is created, edited, moved across the clock change and
    deleted."""
    g, tok = rig.http(), rig.token()
    draft = EventDraft("Ward meeting", "2026-10-24", "18:00", "2026-10-24", "19:00",
                       location="Hall", body="Bring <plans>")
    ev = rig.run(graph.create_event(g, tok, draft.to_graph("Europe/London", LONDON)))
    assert ev.is_organizer and ev.start == datetime(2026, 10, 24, 17, tzinfo=UTC)
    draft.subject = "Ward meeting (moved room)"
    ev = rig.run(graph.update_event(g, tok, ev.id, draft.to_graph("Europe/London", LONDON)))
    full = rig.run(graph.get_event(g, tok, ev.id))
    assert full.subject == "Ward meeting (moved room)" and "&lt;plans&gt;" in full.body_html
    moved = rig.run(graph.move_event(g, tok, ev.id, datetime(2026, 10, 26, 18),
                                     datetime(2026, 10, 26, 19)))
    assert moved.start == datetime(2026, 10, 26, 18, tzinfo=UTC)
    rig.run(graph.delete_event(g, tok, ev.id))
    with pytest.raises(NotFound):
        rig.run(graph.get_event(g, tok, ev.id))


def test_one_occurrence_moves_and_goes_alone(rig: GraphRig) -> None:
    """Moving or deleting one occurrence leaves the rest of the series alone."""
    g, tok = rig.http(), rig.token()
    occ = [e for e in view(rig, count=21) if e.subject == "Ward surgery"]
    moved = rig.run(graph.move_event(g, tok, occ[0].id, datetime.combine(
        occ[0].start.date(), time(14)), datetime.combine(occ[0].start.date(), time(15))))
    assert moved.kind == "exception" and moved.start.astimezone(LONDON).hour == 14
    rig.run(graph.delete_event(g, tok, occ[1].id))
    left = [e for e in view(rig, count=21) if e.subject == "Ward surgery"]
    assert [e.id for e in left] == [occ[0].id, occ[2].id]


def test_members_see_only_their_own_calendar(rig: GraphRig) -> None:
    """Another member's event id is simply not found in this member's calendar."""
    mine = named(view(rig), "Cabinet briefing")
    with pytest.raises(NotFound):
        rig.run(graph.get_event(rig.http(), rig.token("member2"), mine.id))
    with pytest.raises(NotFound):
        rig.run(graph.delete_event(rig.http(), rig.token("member2"), mine.id))
    assert all(e.id != mine.id for e in view(rig, who="member2"))


def test_graph_error_body_shape(rig: GraphRig) -> None:
    """The stand-in's errors carry Graph's {"error": {code, message, innerError}}."""
    g = rig.http()
    resp = rig.run(g.client.get("me/events/nope", headers={
        "Authorization": "Bearer " + rig.run(rig.token()(False))}))
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "ErrorItemNotFound" and err["message"]
    assert {"date", "request-id", "client-request-id"} <= err["innerError"].keys()


def test_401_gets_one_fresh_token_then_sign_in(rig: GraphRig) -> None:
    """A refused token is replaced once; refused again, the member must sign in."""
    g, calls = rig.http(), []
    good = rig.token()

    async def source(fresh: bool) -> str:
        calls.append(fresh)
        return await good(False)
    rig.stand_in.refuse_tokens(1)
    assert rig.run(graph.calendar_view(g, source, *window(ANCHOR, 2)))
    assert calls == [False, True]
    rig.stand_in.refuse_tokens(2)
    with pytest.raises(ReauthRequired):
        rig.run(graph.calendar_view(g, source, *window(ANCHOR, 2)))


class _Entra:
    """Entra's silent acquisition as member_token calls it, counted: each call is a read of
    the member's token cache from the store."""

    def __init__(self, rig: GraphRig) -> None:
        self.good, self.calls = rig.token(), list[tuple[str, bool]]()

    async def graph_token(self, account_id: str, force_refresh: bool = False) -> str:
        self.calls.append((account_id, force_refresh))
        return await self.good(False)


def test_a_request_asks_for_the_members_token_once(rig: GraphRig) -> None:
    """One source serves one request: a view of several Graph pages asks Entra once; after a
    401 it asks afresh once and the later pages use the fresh token."""
    entra = _Entra(rig)
    events = rig.run(graph.calendar_view(rig.http(GATEWAY_GRAPH_PAGE_SIZE="3"),
                                         member_token(entra, "acct-1"), *window(ANCHOR, 15)))
    assert rig.stand_in.requests > 2 and len(events) > 6
    assert entra.calls == [("acct-1", False)]
    entra.calls.clear()
    rig.stand_in.refuse_tokens(1)
    source = member_token(entra, "acct-1")
    assert rig.run(graph.calendar_view(rig.http(GATEWAY_GRAPH_PAGE_SIZE="3"), source,
                                       *window(ANCHOR, 15)))
    assert entra.calls == [("acct-1", False), ("acct-1", True)]
    # A new request is a new source: it asks again.
    assert rig.run(graph.calendar_view(rig.http(), member_token(entra, "acct-1"),
                                       *window(ANCHOR, 2)))
    assert entra.calls[-1] == ("acct-1", False) and len(entra.calls) == 3


def test_expired_token_means_sign_in(rig: GraphRig) -> None:
    """An expired token that cannot be refreshed ends in ReauthRequired."""
    with pytest.raises(ReauthRequired):
        rig.run(graph.calendar_view(rig.http(), rig.token(lifetime=-600), *window(ANCHOR, 1)))


def test_missing_scope_is_forbidden(rig: GraphRig) -> None:
    """A token without Calendars.ReadWrite cannot change the calendar: 403 -> Forbidden."""
    tok = rig.token(scp="Calendars.Read")
    ev = view(rig)[0]
    assert rig.run(graph.get_event(rig.http(), tok, ev.id)).id == ev.id
    with pytest.raises(Forbidden):
        rig.run(graph.delete_event(rig.http(), tok, ev.id))


def test_throttling_honours_retry_after(rig: GraphRig) -> None:
    """A 429 with a short Retry-After is waited out and retried; the member sees nothing."""
    rig.stand_in.throttle(1, retry_after=3)
    assert view(rig)
    assert rig.waits == [3.0] and rig.stand_in.requests == 2


def test_long_retry_after_is_passed_to_the_member(rig: GraphRig) -> None:
    """Beyond the bound the gateway does not wait: the error carries Retry-After."""
    rig.stand_in.throttle(1, retry_after=120)
    with pytest.raises(UpstreamUnavailable) as err:
        view(rig)
    assert err.value.retry_after == 120 and "120 seconds" in err.value.message
    assert rig.waits == [] and rig.stand_in.requests == 1


def test_persistent_throttling_gives_up_after_bounded_retries(rig: GraphRig) -> None:
    """Throttled again and again, the adapter stops after its retries."""
    rig.stand_in.throttle(5, retry_after=1)
    with pytest.raises(UpstreamUnavailable):
        view(rig)
    assert rig.waits == [1.0, 1.0] and rig.stand_in.requests == 3


def test_503_without_retry_after_is_unavailable(rig: GraphRig) -> None:
    """A 503 with no Retry-After is reported at once as unavailable."""
    rig.stand_in.unavailable(1)
    with pytest.raises(UpstreamUnavailable, match="unavailable"):
        view(rig)
    rig.stand_in.unavailable(1, retry_after=2)
    assert view(rig) and rig.waits == [2.0]


def test_hang_times_out(rig: GraphRig) -> None:
    """A Graph that does not answer is reported after graph.timeout_seconds."""
    rig.stand_in.hang(1, seconds=5)
    with pytest.raises(UpstreamUnavailable, match="in time"):
        view(rig, GATEWAY_GRAPH_TIMEOUT_SECONDS="0.3")


def test_unreachable_graph_is_unavailable(rig: GraphRig) -> None:
    """A network fault (nothing listening) is UpstreamUnavailable, not a crash."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = GraphHttp.from_settings(load_settings(environ={
        "GATEWAY_GRAPH_BASE_URL": f"https://127.0.0.1:{port}/v1.0",
        "GATEWAY_GRAPH_CA_FILE": rig.ca_file}))
    rig.clients.append(g)
    with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
        rig.run(graph.calendar_view(g, rig.token(), *window(ANCHOR, 1)))


def test_next_link_to_another_origin_is_not_followed(rig: GraphRig) -> None:
    """A nextLink off Graph's origin is refused, so the token never leaves Graph."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"value": [], "@odata.nextLink":
                                         "https://attacker.example/v1.0/me/calendarView"})
    g = GraphHttp.from_settings(load_settings(environ={}),
                                      transport=httpx.MockTransport(handler))
    rig.clients.append(g)
    with pytest.raises(UpstreamError, match="will not follow"):
        rig.run(graph.calendar_view(g, rig.token(), *window(ANCHOR, 1)))
    assert len(seen) == 1 and seen[0].startswith("https://graph.microsoft.com/v1.0/")


def test_only_https_join_links_survive(rig: GraphRig) -> None:
    """A join link that is not https:// (javascript:, data:) is dropped by the model."""
    from gateway.calendar.model import parse_event
    base = {"id": "x", "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"}}
    assert parse_event({**base, "onlineMeeting": {"joinUrl": "javascript:alert(1)"}}).join_url \
        == ""
    assert parse_event({**base, "onlineMeetingUrl": "https://teams.example/j"}).join_url == \
        "https://teams.example/j"


def test_app_only_canary_reads_a_users_calendar(rig: GraphRig) -> None:
    """The health canary's app-only call (roles Calendars.Read) reads /users/{upn}/calendar."""
    import time as _time

    from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE
    now = int(_time.time())
    app_token = rig.signer.sign({"aud": GRAPH_AUDIENCE, "iss": ACCESS_ISSUER, "iat": now,
                                 "nbf": now, "exp": now + 600, "roles": ["Calendars.Read"],
                                 "oid": "app"})
    g = rig.http()
    ok = rig.run(g.client.get("users/gateway.canary@council.example/calendar",
                              headers={"Authorization": f"Bearer {app_token}"}))
    assert ok.status_code == 200 and ok.json()["owner"]["address"].startswith("gateway.canary")
    user_token = rig.run(rig.token()(False))
    denied = rig.run(g.client.get("users/gateway.canary@council.example/calendar",
                                  headers={"Authorization": f"Bearer {user_token}"}))
    assert denied.status_code == 403
    missing = rig.run(g.client.get("users/nobody@council.example/calendar",
                                   headers={"Authorization": f"Bearer {app_token}"}))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ErrorInvalidUser"
