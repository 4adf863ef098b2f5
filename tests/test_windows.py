"""Release and freeze windows: the cron parser, when a window is open (daylight saving
included) and what the policy accepts, with fixed times; then the installed hook and the
CLI with a window that opened minutes ago by the real clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import author_env, commit_all, git, sl
from servers import PRD, STG, Released, accepted, copy_dir, ready, rejected

from stageline.errors import BLOCKED, OK, PERMISSION_DENIED
from stageline.layout import PUSH_LOG
from stageline.policy import PolicyError, parse_policy
from stageline.windows import Window, WindowError, blocking, parse_cron, parse_duration


def at(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def window(cron: str, duration: str, zone: str, kind: str = "deny", name: str = "w") -> Window:
    return Window(name, kind, parse_cron(cron), parse_duration(duration), zone)


@pytest.mark.parametrize(("text", "minutes", "hours", "weekdays"), [
    ("0 9 * * 1-5", (0,), (9,), {1, 2, 3, 4, 5}),
    ("*/20 8,17 * * mon-fri", (40, 20, 0), (17, 8), {1, 2, 3, 4, 5}),
    ("5 0 * * 7", (5,), (0,), {0}),
    ("0 0 * * SUN", (0,), (0,), {0}),
])
def test_cron_fields(text: str, minutes: tuple[int, ...], hours: tuple[int, ...],
                     weekdays: set[int]) -> None:
    cron = parse_cron(text)
    assert (cron.minutes, cron.hours, set(cron.weekdays)) == (minutes, hours, weekdays)


@pytest.mark.parametrize(("text", "says"), [
    ("0 9 * *", "five fields"), ("60 * * * *", "not a minute"), ("0 9-5 * * *", "backwards"),
    ("0 9 * foo *", "not a month"), ("0 9 * * 8", "not a day of week"), ("0 ٩ * * *", "hour"),
    ("0 0 30,31 2 *", "never runs"), ("0 0 31 4,6 *", "never runs"),
])
def test_bad_cron_is_one_sentence(text: str, says: str) -> None:
    with pytest.raises(WindowError, match=says):
        parse_cron(text)


@pytest.mark.parametrize(("text", "minutes"), [("90m", 90), ("8h", 480), ("14d", 20160)])
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["0m", "8", "1.5h", "400d", "8 h", "-1h", 8])
def test_bad_durations(text: object) -> None:
    with pytest.raises(WindowError):
        parse_duration(text)


@pytest.mark.parametrize("days", ["*/1", "*"])
def test_a_day_field_beginning_with_a_star_leaves_the_days_to_the_other(days: str) -> None:
    """As Vixie cron and cronie: "0 0 */1 * 3" runs on Wednesdays only (a red-team
    finding: read as "every day or Wednesday", a release window opened every day)."""
    wednesdays = window(f"0 0 {days} * 3", "24h", "UTC", "allow")
    assert wednesdays.opened(at("2026-12-09T12:00", "UTC")) is not None  # a Wednesday
    assert wednesdays.opened(at("2026-12-10T12:00", "UTC")) is None
    assert wednesdays.opened(at("2026-12-07T12:00", "UTC")) is None
    both = window("0 0 1 * 3", "24h", "UTC", "allow")  # restricted both: either matches
    assert both.opened(at("2026-12-01T12:00", "UTC")) is not None  # 1st, a Tuesday
    assert both.opened(at("2026-12-09T12:00", "UTC")) is not None


def test_office_hours() -> None:
    office = window("0 9 * * 1-5", "8h", "America/New_York", "allow", "office-hours")
    assert office.opened(at("2026-12-07T10:00", "America/New_York")) is not None  # Monday
    assert office.opened(at("2026-12-07T08:59", "America/New_York")) is None
    assert office.opened(at("2026-12-07T17:00", "America/New_York")) is None  # 9 + 8h
    assert office.opened(at("2026-12-12T10:00", "America/New_York")) is None  # Saturday
    assert blocking([office], at("2026-12-12T10:00", "America/New_York")) == \
        "outside its release windows (office-hours)"
    assert blocking([office], at("2026-12-07T10:00", "America/New_York")) is None


def test_a_freeze_that_began_long_ago_still_holds() -> None:
    freeze = window("0 0 20 12 *", "336h", "Europe/Berlin", name="holiday-freeze")
    assert blocking([freeze], at("2027-01-02T12:00", "Europe/Berlin")) == \
        "frozen by holiday-freeze until 2027-01-03 00:00 Europe/Berlin"
    assert blocking([freeze], at("2027-01-03T00:00", "Europe/Berlin")) is None
    assert blocking([freeze], at("2026-12-19T23:59", "Europe/Berlin")) is None


def test_a_deny_window_wins_over_an_allow_window() -> None:
    office = window("0 9 * * 1-5", "8h", "UTC", "allow", "office")
    freeze = window("0 12 7 12 *", "1h", "UTC", "deny", "lunch-freeze")
    assert blocking([office, freeze], at("2026-12-07T12:30", "UTC")) == \
        "frozen by lunch-freeze until 2026-12-07 13:00 UTC"
    assert blocking([], at("2026-12-07T12:30", "UTC")) is None


def test_a_start_a_jump_forward_skips_is_read_with_the_offset_before() -> None:
    """Berlin, 2027-03-28: clocks go from 02:00 to 03:00. A window at 02:30 opens at
    03:30 (02:30 read at +01:00), and lasts its hour of elapsed time."""
    night = window("30 2 * * *", "1h", "Europe/Berlin")
    assert night.opened(at("2027-03-28T03:20", "Europe/Berlin")) is None
    start = night.opened(at("2027-03-28T03:45", "Europe/Berlin"))
    assert start == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert night.opened(at("2027-03-28T04:31", "Europe/Berlin")) is None


def test_a_start_a_jump_back_repeats_opens_at_its_first_occurrence() -> None:
    """Berlin, 2027-10-31: clocks go from 03:00 back to 02:00; 02:30 happens twice."""
    night = window("30 2 * * *", "30m", "Europe/Berlin")
    first = datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert night.opened(first + timedelta(minutes=10)) == first
    assert night.opened(first + timedelta(hours=1, minutes=10)) is None  # 02:40 CET


POLICY = """organization: acme
members: {q: {email: q@x.test, roles: [qa]}, r: {email: r@x.test, roles: [qa]}}
windows:
  holiday-freeze: {kind: deny, cron: "0 0 20 12 *", duration: 336h, timezone: Europe/Berlin}
  office-hours: {kind: allow, cron: "0 9 * * 1-5", duration: 8h, timezone: America/New_York}
promotion:
  production: {approvals: {required: 2}, windows: [holiday-freeze, office-hours]}
  staging: {windows: []}
"""


def test_a_policy_with_windows_reads() -> None:
    policy = parse_policy(POLICY.encode())
    assert [w.name for w in policy.windows["production"]] == ["holiday-freeze", "office-hours"]
    assert policy.windows.get("staging", ()) == ()
    assert policy.approvals_required == 2


@pytest.mark.parametrize(("old", "new", "says"), [
    ("windows: [holiday-freeze, office-hours]", "windows: [holiday]", "windows does not define"),
    ("timezone: Europe/Berlin", "timezone: Europe/Atlantis", "not an IANA time zone"),
    ("timezone: Europe/Berlin", "timezone: localtime", "not an IANA time zone"),
    ("timezone: Europe/Berlin", "timezone: right/Europe/Berlin", "not an IANA time zone"),
    ("timezone: Europe/Berlin", "timezone: Factory", "not an IANA time zone"),
    ('cron: "0 0 20 12 *"', 'cron: "0 0 31 2 *"', "never runs"),
    ('cron: "0 0 20 12 *"', 'cron: "0 0 20 13 *"', "not a month"),
    ("duration: 336h", "duration: 2w", "duration"),
    ("kind: deny", "kind: block", "kind must be allow or deny"),
    ("{required: 2}", "{required: 3}", "more than the 2 members"),
])
def test_a_bad_window_policy_is_exit_5_with_the_key(old: str, new: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says) as info:
        parse_policy(POLICY.replace(old, new).encode())
    assert info.value.code == 5


# -- the hook and the CLI, by the real clock ---------------------------------------------


def _freeze_now(clone: Path, server: Path, required: int = 1) -> None:
    """A daily deny window on production that opened two minutes ago (UTC), for 2 hours."""
    began = datetime.now(UTC) - timedelta(minutes=2)
    policy = clone / "stageline.yaml"
    policy.write_text(policy.read_text() + (
        f"windows:\n  freeze: {{kind: deny, cron: \"{began.minute} {began.hour} * * *\", "
        "duration: 2h, timezone: UTC}\npromotion:\n  production: {windows: [freeze], "
        f"approvals: {{required: {required}}}}}\n"))
    commit_all(clone, "olga", "Freeze production")
    accepted(clone, server, "olga")


def test_a_production_push_in_a_freeze_is_refused_and_an_override_passes(
        clone: Path, server: Path) -> None:
    ready(clone, server)
    _freeze_now(clone, server)
    refused = sl(clone, "promote", "support-bot", "--to", "production", actor="olga")
    assert refused.code == BLOCKED and "production is frozen by freeze until" in refused.err
    copy_dir(clone, STG, PRD)
    commit_all(clone, "olga", "Ship by hand")
    rejected(clone, server, "olga", "production is frozen by freeze until")
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    denied = sl(clone, "promote", "support-bot", "--to", "production", "--override", "x",
                actor="alice")
    assert denied.code == PERMISSION_DENIED
    done = sl(clone, "promote", "support-bot", "--to", "production", "--override",
              "incident 42: refunds fail", actor="olga")
    assert done.code == OK, done.err
    accepted(clone, server, "olga")
    shown = sl(clone, "log")
    assert "promote-to-production (override)" in shown.out
    assert "overrode a window: incident 42: refunds fail" in shown.out
    history = sl(clone, "history", "support-bot")
    assert "promote (override)" in history.out
    newest = json.loads(sl(clone, "history", "support-bot", "--json").out)["versions"][0]
    assert newest["override"] == "incident 42: refunds fail"
    last = json.loads((server / PUSH_LOG).read_text().splitlines()[-1])
    assert last["overrides"] == [{"commit": git(clone, "rev-parse", "HEAD").strip(),
                                  "reason": "incident 42: refunds fail"}]


def test_an_override_by_a_developer_is_no_override(clone: Path, server: Path) -> None:
    ready(clone, server)
    _freeze_now(clone, server)
    copy_dir(clone, STG, PRD)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Ship\n\nStageline-Override: trust me",
        env=author_env("alice"))
    rejected(clone, server, "alice", "only org-admins may override a window")


def test_a_rollback_goes_through_a_freeze(released: Released) -> None:
    clone, server = released.clone, released.server
    _freeze_now(clone, server)
    assert sl(clone, "rollback", "support-bot", actor="olga").code == OK
    accepted(clone, server, "olga")


def test_a_dry_run_lists_every_reason_production_is_blocked(clone: Path, server: Path) -> None:
    ready(clone, server)
    _freeze_now(clone, server, required=2)
    result = sl(clone, "promote", "support-bot", "--to", "production", "--dry-run", actor="olga")
    assert result.code == BLOCKED
    assert result.err.startswith("stageline: support-bot cannot go to production now: "
                                 "approvals 1 of 2 (quinn); production is frozen by freeze until")
    status = sl(clone, "status", "support-bot", "--json")
    import json

    assert len(json.loads(status.out)["agents"][0]["blocked_by"]) == 2


def test_a_promotion_labelled_rollback_cannot_hide_an_override(clone: Path,
                                                               server: Path) -> None:
    """Red-team finding: production set to staging with 'Stageline-Action: rollback' and no
    Stageline-Restores passed, and log and history showed a rollback, not the override."""
    ready(clone, server)
    _freeze_now(clone, server)
    copy_dir(clone, STG, PRD)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Push support-bot to production\n\n"
        "Stageline-Action: rollback\nStageline-Agent: support-bot\nStageline-Actor: olga\n"
        "Stageline-Override: quiet push", env=author_env("olga"))
    rejected(clone, server, "olga", "a rollback names what it restores")
