"""Calendar pages over HTTPS with a signed-in member: lists, event page, forms, answers,
errors, CSRF, and one member never reaching another's calendar."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest

from gateway.devstack.graph import GraphStandIn
from gateway.devstack.users import user
from tests.conftest import Gateway, csrf_of, module_gateway, sign_in, signed_in

gw = module_gateway("calgw")
member = signed_in("member")


@pytest.fixture(autouse=True)
def fresh_calendar(stack: Any) -> Iterator[GraphStandIn]:
    stack.graph.reset()
    yield stack.graph
    stack.graph.reset()


def link(html: str, subject: str) -> str:
    m = re.search(r'href="(/calendar/event/[^"]+)"><span class="t">[^<]*</span> '
                  r'<span class="s">' + re.escape(subject), html)
    assert m, f"no link to {subject!r}"
    return unescape(m.group(1))


def post(client: httpx.Client, path: str, data: dict[str, str], csrf_from: str = "/calendar"
         ) -> httpx.Response:
    return client.post(path, data={"csrf_token": csrf_of(client, csrf_from), **data})


def test_agenda_lists_today_and_the_next_fortnight(member: httpx.Client) -> None:
    """The agenda shows timed, all-day and multi-day events and flags invitations."""
    page = member.get("/calendar")
    assert page.status_code == 200
    text = page.text
    assert 'class="cal-day today"' in text and ">Today<" in text
    for subject in ("Cabinet briefing", "Planning Committee", "Full Council",
                    "LGA annual conference", "Ward surgery"):
        assert subject in text
    assert re.search(r'class="ev ask"><a [^>]+><span class="t">14:00–16:00</span> '
                     r'<span class="s">Scrutiny Committee', text)
    assert text.count("LGA annual conference") == 3      # one line per day it covers
    assert "budget" not in text                          # no bodies in lists


def test_day_and_week_views(member: httpx.Client, stack: Any) -> None:
    """The day view shows one day; the week view shows Monday to Sunday."""
    agenda = member.get("/calendar").text
    ev_page = member.get(link(agenda, "Full Council")).text
    day = re.search(r'href="/calendar/day\?date=([0-9-]+)"', ev_page)
    assert day
    one = member.get(f"/calendar/day?date={day.group(1)}")
    assert one.status_code == 200 and "Full Council" in one.text and "All day" in one.text
    week = member.get(f"/calendar/week?date={day.group(1)}")
    assert week.status_code == 200 and week.text.count('class="cal-day') == 7
    assert week.text.index("Mon ") < week.text.index("Sun ")
    assert member.get("/calendar/day?date=not-a-date").status_code == 400


def test_event_page_shows_details_and_sanitised_body(member: httpx.Client) -> None:
    """The event page has location, join link, attendees with answers, and a safe body."""
    page = member.get(link(member.get("/calendar").text, "Planning Committee"))
    assert page.status_code == 200
    assert "Council Chamber" in page.text and "Join the online meeting" in page.text
    cabinet = member.get(link(member.get("/calendar").text, "Cabinet briefing")).text
    assert "Cllr Sam Patel" in cabinet and "Tentative" in cabinet
    assert "<b>budget</b>" in cabinet and "<script>" not in cabinet


def test_create_edit_move_delete(member: httpx.Client, fresh_calendar: GraphStandIn) -> None:
    """A member adds an event, edits it, moves it and deletes it, all with plain forms."""
    form = member.get("/calendar/new?date=2026-12-03")
    assert form.status_code == 200 and 'name="csrf_token"' in form.text
    r = post(member, "/calendar/new", {
        "subject": "Surgery prep", "start_date": "2026-12-03", "start_time": "09:00",
        "end_date": "2026-12-03", "end_time": "09:45", "location": "Home", "body": "Notes"})
    assert r.status_code == 303 and "done=created" in r.headers["location"]
    url = r.headers["location"].split("?")[0]
    page = member.get(r.headers["location"]).text
    assert "The event was added" in page and "09:00 to 09:45 (GMT)" in page
    r = post(member, url + "/edit", {
        "subject": "Surgery prep (long)", "start_date": "2026-12-03", "start_time": "09:00",
        "end_date": "2026-12-03", "end_time": "10:30", "location": "Home", "body": "Notes",
        "body_was": "Notes"})
    assert r.status_code == 303
    assert "09:00 to 10:30" in member.get(url).text
    r = post(member, url + "/move", {"subject": "Surgery prep (long)", "minutes": "90",
                                     "date": "2027-04-01", "time": "14:00"})
    assert r.status_code == 303
    moved = member.get(url).text
    assert "Thursday 1 April 2027, 14:00 to 15:30 (BST)" in moved
    r = post(member, url + "/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/calendar?done=deleted"
    assert member.get(url).status_code == 404


def test_invalid_form_keeps_the_members_input(member: httpx.Client) -> None:
    """An end before the start re-renders the form with the input and the reason."""
    r = post(member, "/calendar/new", {
        "subject": "Ward <meeting>", "start_date": "2026-12-03", "start_time": "10:00",
        "end_date": "2026-12-03", "end_time": "09:00", "location": "Hall"})
    assert r.status_code == 422
    assert 'value="Ward &lt;meeting&gt;"' in r.text and "The end must be after the start" in r.text
    assert 'aria-invalid="true"' in r.text
    r = post(member, "/calendar/new", {
        "subject": "Night", "start_date": "2027-03-28", "start_time": "01:30",
        "end_date": "2027-03-28", "end_time": "03:00"})
    assert r.status_code == 422 and "clocks go forward" in r.text


def test_failed_save_keeps_the_form(member: httpx.Client, fresh_calendar: GraphStandIn) -> None:
    """When Graph is unavailable the form comes back with the member's values."""
    csrf = csrf_of(member, "/calendar")
    fresh_calendar.unavailable(1)
    r = member.post("/calendar/new", data={
        "csrf_token": csrf, "subject": "Budget call", "start_date": "2026-12-04",
        "start_time": "11:00", "end_date": "2026-12-04", "end_time": "12:00",
        "body": "Keep me"})
    assert r.status_code == 503
    assert 'value="Budget call"' in r.text and "Keep me" in r.text
    assert "has not been added yet" in r.text


def test_answer_accept_and_decline(member: httpx.Client, fresh_calendar: GraphStandIn) -> None:
    """Accept with a comment stays on the event; decline removes it and returns to the agenda."""
    url = link(member.get("/calendar").text, "Scrutiny Committee")
    r = post(member, url + "/answer", {"answer": "accept", "comment": "See you there",
                                       "send_response": "1"}, csrf_from=url)
    assert r.status_code == 303 and r.headers["location"].endswith("done=accepted")
    assert "You accepted." in member.get(r.headers["location"]).text
    assert fresh_calendar.sent[-1]["comment"] == "See you there"
    url = link(member.get("/calendar").text, "Ward walkabout")
    r = post(member, url + "/answer", {"answer": "tentative"}, csrf_from=url)
    assert r.status_code == 303 and len(fresh_calendar.sent) == 1   # not sent: box unticked
    r = post(member, url + "/answer", {"answer": "decline", "send_response": "1"})
    assert r.headers["location"] == "/calendar?done=declined"
    assert "Ward walkabout" not in member.get("/calendar").text


def test_cancel_own_meeting(member: httpx.Client, fresh_calendar: GraphStandIn) -> None:
    """Deleting a meeting the member organises cancels it with a message to attendees."""
    url = link(member.get("/calendar").text, "Cabinet briefing")
    confirm = member.get(url + "/delete")
    assert "Cancel this meeting?" in confirm.text
    r = post(member, url + "/delete", {"cancel": "1", "comment": "Moved to next week"})
    assert r.headers["location"] == "/calendar?done=cancelled"
    assert fresh_calendar.sent[-1]["kind"] == "cancel"
    assert "Cabinet briefing" not in member.get("/calendar").text


def test_csrf_is_enforced(member: httpx.Client, fresh_calendar: GraphStandIn) -> None:
    """A form post without the CSRF token is refused and changes nothing."""
    url = link(member.get("/calendar").text, "Cabinet briefing")
    fresh_calendar.requests = 0
    r = member.post(url + "/delete", data={})
    assert r.status_code == 403
    assert fresh_calendar.requests == 0
    assert member.get(url).status_code == 200


def test_another_member_cannot_see_or_change_it(gw: Gateway, member: httpx.Client) -> None:
    """Member 2 gets 404 for member 1's event, to read or delete, and it survives."""
    url = link(member.get("/calendar").text, "Cabinet briefing")
    other = sign_in(gw, "member2")
    assert other.get(url).status_code == 404
    r = post(other, url + "/delete", {})
    assert r.status_code == 404
    assert member.get(url).status_code == 200
    assert user("member2").name in other.get("/calendar").text


def test_throttled_beyond_the_bound_says_when_to_retry(member: httpx.Client,
                                                       fresh_calendar: GraphStandIn) -> None:
    """A long Retry-After reaches the member as a 503 page with Retry-After."""
    fresh_calendar.throttle(1, retry_after=90)
    r = member.get("/calendar")
    assert r.status_code == 503 and r.headers["retry-after"] == "90"
    assert "try again in 90 seconds" in r.text


def test_token_refused_twice_sends_member_to_sign_in(gw: Gateway,
                                                    fresh_calendar: GraphStandIn) -> None:
    """Graph refusing the token after one refresh ends the session and asks to sign in."""
    client = sign_in(gw, "member")
    assert client.get("/calendar").status_code == 200
    fresh_calendar.refuse_tokens(2)
    r = client.get("/calendar/week")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/signin?next=%2Fcalendar%2Fweek")


def test_signed_out_visitor_is_sent_to_sign_in(gw: Gateway) -> None:
    """Without a session the calendar redirects to sign-in."""
    r = gw.client().get("/calendar")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/signin")


def test_answer_invitation_from_mail_by_uid(member: httpx.Client,
                                            fresh_calendar: GraphStandIn) -> None:
    """A meeting request in mail is answered through its UID; decline returns to the message,
    and only to a path on this site."""
    member.get("/calendar")      # seeds the calendar
    cal = fresh_calendar.calendar(user("member").oid)
    uids = {e.seed.subject: e.ical_uid for e in cal.events.values()}
    r = post(member, "/calendar/invite/answer", {
        "uid": uids["Scrutiny Committee"], "answer": "tentative", "send_response": "1",
        "back": "/mail/read?f=INBOX&uid=7"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=tentative")
    assert "You accepted tentatively." in member.get(r.headers["location"]).text
    r = post(member, "/calendar/invite/answer", {
        "uid": uids["Ward walkabout with the police"], "answer": "decline",
        "back": "//evil.example/x"})
    assert r.headers["location"] == "/calendar?done=declined"
    assert [s["kind"] for s in fresh_calendar.sent] == ["tentativelyAccepted"]
    # Not in the calendar and no answer to send: a plain message and the form, not a 404
    # (tests/calendar/test_invitations.py answers such invitations by mail).
    r = post(member, "/calendar/invite/answer", {"uid": "gone", "answer": "accept",
                                                 "comment": "Typed"})
    assert r.status_code == 409
    assert "not in your calendar" in r.text and "Typed</textarea>" in r.text
