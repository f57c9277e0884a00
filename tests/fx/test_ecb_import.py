"""Importing the ECB's euro reference rates: both file layouts, all or nothing, one event."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from returnguard.audit.models import Event
from returnguard.auth.actor import Actor
from returnguard.cli import app as cli_app
from returnguard.errors import InvalidInput
from returnguard.fx import ecb
from returnguard.fx import endpoints as fx_endpoints
from returnguard.fx import service as fx
from returnguard.fx.models import FxRate
from returnguard.kit.db import Database, utcnow
from tests.conftest import Api, Tenant, add_key, make_tenant

# The history, newest day first: a trailing comma on every line, N/A where a currency
# had no rate that day, and columns of currencies the euro replaced (CYP, BGN).
HISTORY = """\
Date,USD,JPY,BGN,CYP,GBP,
2026-11-27,1.0562,160.12,N/A,N/A,0.8311,
2026-11-26,1.0550,159.98,N/A,N/A,N/A,
2026-11-25,1.0475,158.700,N/A,N/A,0.8297,
"""
# The day's file: a space after each comma and the day written out.
DAILY = (
    "Date, USD, JPY, GBP, CHF, \n"  # the ECB's own trailing ", "
    "27 November 2026, 1.0562, 160.12, 0.8311, 0.9316, \n"
)


def rates_of(found: ecb.EcbFile) -> set[tuple[str, str, str]]:
    return {(r.day.isoformat(), r.quote, str(r.rate)) for r in found.rates}


def problems_of(text: str) -> list[str]:
    return [str(p) for p in ecb.parse(text).problems]


def post_csv(api: Api, text: str | bytes, content_type: str = "text/csv") -> Any:
    headers = api.tenant.headers | {"Content-Type": content_type}
    return api.client.post("/api/v1/fx-rates/import", content=text, headers=headers)


def import_events(db: Database, tenant: Tenant) -> list[Event]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Event).where(
                    Event.organization_id == tenant.organization_id,
                    Event.action == "fx_rate.imported",
                )
            )
        )


# --- the file, without a database --------------------------------------------------------


def test_the_history_is_read_skipping_na_cells_and_the_trailing_comma() -> None:
    found = ecb.parse(HISTORY)

    assert found.ok, found.problems
    assert rates_of(found) == {
        ("2026-11-27", "USD", "1.0562"),
        ("2026-11-27", "JPY", "160.12"),
        ("2026-11-27", "GBP", "0.8311"),
        ("2026-11-26", "USD", "1.0550"),
        ("2026-11-26", "JPY", "159.98"),
        ("2026-11-25", "USD", "1.0475"),
        ("2026-11-25", "JPY", "158.700"),
        ("2026-11-25", "GBP", "0.8297"),
    }
    assert {r.base for r in found.rates} == {"EUR"}
    assert all(isinstance(r.rate, Decimal) for r in found.rates)


def test_the_days_file_with_spaces_and_a_written_date_is_read() -> None:
    found = ecb.parse(DAILY)

    assert found.ok, found.problems
    assert rates_of(found) == {
        ("2026-11-27", "USD", "1.0562"),
        ("2026-11-27", "JPY", "160.12"),
        ("2026-11-27", "GBP", "0.8311"),
        ("2026-11-27", "CHF", "0.9316"),
    }


def test_a_byte_order_mark_and_windows_line_ends_change_nothing() -> None:
    for text in (HISTORY, DAILY):
        windows = "\ufeff" + text.replace("\n", "\r\n")
        found = ecb.parse(windows)
        assert found.ok, found.problems
        assert rates_of(found) == rates_of(ecb.parse(text))


def test_columns_of_retired_currencies_are_skipped_and_named() -> None:
    found = ecb.parse("Date,USD,CYP,BGN,\n2007-12-31,1.4721,0.585274,1.9558,\n")

    assert found.ok, found.problems
    assert rates_of(found) == {("2007-12-31", "USD", "1.4721")}
    assert found.skipped == ["CYP", "BGN"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("USD,JPY\n2026-11-27,1.05,160\n", "line 1, column 1: the first column must be Date"),
        ("Date,USD,XYZ\n2026-11-27,1.05,2\n", "line 1, column XYZ: unknown currency code"),
        ("Date,USD,JPY,USD\n2026-11-27,1,2,3\n", "line 1, column USD: appears twice"),
        ("Date,USD,EUR\n2026-11-27,1,1\n", "line 1, column EUR: rates are per euro"),
        ("Date,USD,,JPY\n2026-11-27,1,,2\n", "line 1, column 3: has no currency code"),
        (
            "Date,USD\n2026-11-27,1\n2026-13-01,1\n",
            "line 3, column Date: '2026-13-01' is not a day",
        ),
        ("Date,USD\n31 Novembre 2026,1\n", "line 2, column Date: '31 Novembre 2026' is not a day"),
        (
            "Date,USD\n2026-11-27,1\n2026-11-27,1\n",
            "line 3, column Date: 2026-11-27 is also on line 2",
        ),
        (
            "Date,USD,JPY\n2026-11-27,1.05,abc\n",
            "line 2, column JPY: 'abc' is not a decimal number",
        ),
        (
            "Date,USD,JPY\n2026-11-27,1.05,1e3\n",
            "line 2, column JPY: '1e3' is not a decimal number",
        ),
        ("Date,USD\n2026-11-27,0\n", "line 2, column USD: '0' is not a rate"),
        ("Date,USD\n2026-11-27,-1.05\n", "line 2, column USD: '-1.05' is not a rate"),
        ("Date,USD,JPY\n2026-11-27,1.05,\n", "line 2, column JPY: is empty; write N/A"),
        ("Date,USD,JPY\n2026-11-27,1.05\n", "line 2, column JPY: the row ends here"),
        ("Date,USD\n2026-11-27,1.05,7\n", "line 2, column 3: the row has more cells"),
        ("Date,USD\n2026-11-27,N/A\n", "line 1: the file has no rates"),
        ("", "line 1: the file is empty"),
    ],
)
def test_every_problem_names_its_line_and_column(text: str, expected: str) -> None:
    problems = problems_of(text)

    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_counted_but_only_the_first_fifty_are_listed() -> None:
    rows = "".join(f"2026-{1 + i // 28:02d}-{1 + i % 28:02d},oops\n" for i in range(60))
    found = ecb.parse("Date,USD\n" + rows)

    assert found.problem_count == 60
    assert len(found.problems) == ecb.MAX_PROBLEMS
    assert str(found.problems[-1]).startswith("line 51, column USD:")


# --- the service, on SQLite and PostgreSQL -----------------------------------------------


def test_an_import_records_every_rate_and_one_event_describing_it(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id, "test")
    with db.session() as session:
        summary = fx.import_ecb(session, actor, HISTORY)

    assert (summary.first_day, summary.last_day) == (date(2026, 11, 25), date(2026, 11, 27))
    assert (summary.days, summary.rates, summary.created) == (3, 8, 8)
    assert (summary.updated, summary.unchanged) == (0, 0)
    assert summary.currencies == ["GBP", "JPY", "USD"]
    assert summary.skipped_currencies == ["BGN", "CYP"]
    with db.session() as session:
        rows = session.scalars(select(FxRate).where(FxRate.organization_id == t.organization_id))
        stored = {(r.day.isoformat(), r.base, r.quote, r.rate, r.source) for r in rows}
    assert ("2026-11-25", "EUR", "JPY", "158.7", "ecb") in stored  # kept like set_rate keeps it
    assert len(stored) == 8

    [event] = import_events(db, t)
    assert event.subject_type == "fx_rate"
    assert event.subject_id == str(summary.import_id)
    assert event.after is not None
    assert event.after["first_day"] == "2026-11-25"
    assert event.after["last_day"] == "2026-11-27"
    assert event.after["currencies"] == ["GBP", "JPY", "USD"]
    assert (event.after["created"], event.after["updated"], event.after["unchanged"]) == (8, 0, 0)


def test_imported_rates_are_used_directly_inverted_and_crossed_through_the_euro(
    db: Database,
) -> None:
    t = make_tenant(db)
    with db.session() as session:
        fx.import_ecb(session, Actor.system(t.organization_id), HISTORY)
    org = t.organization_id
    with db.session() as session:
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 27)) == Decimal("1.0562")
        # Saturday uses Friday's rate; GBP on the 26th (N/A) uses the 25th's.
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 28)) == Decimal("1.0562")
        assert fx.rate(session, org, "EUR", "GBP", date(2026, 11, 26)) == Decimal("0.8297")
        assert fx.rate(session, org, "JPY", "EUR", date(2026, 11, 27)) == 1 / Decimal("160.12")
        crossed = fx.rate(session, org, "USD", "JPY", date(2026, 11, 27))
        assert crossed is not None
        exact = Decimal("160.12") / Decimal("1.0562")
        assert crossed.quantize(Decimal("1e-20")) == exact.quantize(Decimal("1e-20"))
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 24)) is None


def test_importing_again_changes_nothing_and_a_corrected_file_updates_only_its_days(
    db: Database,
) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    with db.session() as session:
        # A rate typed in by hand that the file agrees with stays as it was typed.
        fx.set_rate(
            session, actor, day=date(2026, 11, 26), base="EUR", quote="JPY", rate=Decimal("159.98")
        )
        fx.import_ecb(session, actor, HISTORY)
    with db.session() as session:
        again = fx.import_ecb(session, actor, HISTORY)
    assert (again.rates, again.created, again.updated, again.unchanged) == (8, 0, 0, 8)

    corrected = HISTORY.replace("2026-11-27,1.0562", "2026-11-27,1.0570")
    with db.session() as session:
        fixed = fx.import_ecb(session, actor, corrected)
        assert (fixed.created, fixed.updated, fixed.unchanged) == (0, 1, 7)
        org = t.organization_id
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 27)) == Decimal("1.057")
    with db.session() as session:
        sources = dict(
            session.execute(
                select(FxRate.quote, FxRate.source).where(FxRate.day == date(2026, 11, 26))
            ).all()
        )
    assert sources == {"USD": "ecb", "JPY": "manual"}

    events = import_events(db, t)
    assert len(events) == 3  # one per import, not one per rate
    last = max(events, key=lambda e: e.seq)
    assert last.data == {
        "updated_rates": [
            {"day": "2026-11-27", "quote": "USD", "before": "1.0562", "after": "1.057"}
        ]
    }


def test_a_file_with_any_problem_writes_nothing_and_lists_every_problem(db: Database) -> None:
    t = make_tenant(db)
    bad = HISTORY.replace("160.12", "160,12x").replace("2026-11-25", "2026-11-31")
    with db.session() as session, pytest.raises(InvalidInput) as raised:
        fx.import_ecb(session, Actor.system(t.organization_id), bad)

    assert {e["field"] for e in raised.value.errors} == {"file"}
    messages = [e["message"] for e in raised.value.errors]
    assert any(m.startswith("line 4, column Date: '2026-11-31'") for m in messages), messages
    assert any(m.startswith("line 2, column 7: the row has more cells") for m in messages)
    assert "nothing was imported" in raised.value.detail
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(FxRate)) == 0
    assert import_events(db, t) == []


def test_more_than_fifty_problems_are_summed_up_in_a_last_error(db: Database) -> None:
    t = make_tenant(db)
    rows = "".join(f"2026-{1 + i // 28:02d}-{1 + i % 28:02d},oops\n" for i in range(60))
    with db.session() as session, pytest.raises(InvalidInput) as raised:
        fx.import_ecb(session, Actor.system(t.organization_id), "Date,USD\n" + rows)

    assert len(raised.value.errors) == ecb.MAX_PROBLEMS + 1
    assert raised.value.errors[-1]["message"] == "and 10 more problem(s) not listed"
    assert raised.value.detail.startswith("file: line 2, column USD: 'oops' is not a decimal")
    assert "(and 59 more)" in raised.value.detail


def test_a_rate_recorded_while_an_import_runs_fails_the_import_whole(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_tenant(pg_db)
    actor = Actor.system(t.organization_id)

    def someone_records_a_rate_meanwhile() -> Any:
        # Called between the import's read of the existing rates and its writes.
        with pg_db.session() as other:
            fx.set_rate(
                other, actor, day=date(2026, 11, 27), base="EUR", quote="USD", rate=Decimal("1.06")
            )
        return utcnow()

    monkeypatch.setattr(fx, "utcnow", someone_records_a_rate_meanwhile)
    with pytest.raises(fx.ConcurrentImport) as raised, pg_db.session() as session:
        fx.import_ecb(session, actor, HISTORY)

    assert raised.value.status == 409
    with pg_db.session() as session:
        assert session.scalars(select(FxRate.rate)).all() == ["1.06"]
    assert import_events(pg_db, t) == []


# --- the API ---------------------------------------------------------------------------


def test_the_import_endpoint_answers_with_the_summary(api: Api) -> None:
    r = post_csv(api, HISTORY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("first_day", "last_day", "days", "rates", "created")} == {
        "first_day": "2026-11-25",
        "last_day": "2026-11-27",
        "days": 3,
        "rates": 8,
        "created": 8,
    }
    assert body["skipped_currencies"] == ["BGN", "CYP"]

    r = post_csv(api, "\ufeff" + DAILY.replace("\n", "\r\n"), "text/csv; charset=utf-8")
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["unchanged"]) == (1, 3)  # CHF is new

    listed = api.get("/api/v1/fx-rates?base=EUR&quote=CHF").json()
    assert [(x["day"], x["rate"], x["source"]) for x in listed] == [("2026-11-27", "0.9316", "ecb")]


def test_a_bad_file_over_the_api_is_a_422_naming_line_and_column_and_writes_nothing(
    api: Api,
) -> None:
    r = post_csv(api, HISTORY.replace("0.8297", "zero"))

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [
        {
            "field": "file",
            "message": "line 4, column GBP: 'zero' is not a decimal number such as 1.0856",
        }
    ]
    assert api.get("/api/v1/fx-rates").json() == []

    r = post_csv(api, "Date,USD\n2026-11-27,1.05\n".encode("utf-16"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "file"


def test_the_import_endpoint_wants_csv_of_bounded_size(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = api.post("/api/v1/fx-rates/import", {"file": HISTORY})
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"

    monkeypatch.setattr(fx_endpoints, "MAX_IMPORT_BYTES", 100)
    r = post_csv(api, HISTORY)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "file_too_large"
    assert r.json()["max_bytes"] == 100
    assert api.get("/api/v1/fx-rates").json() == []


def test_only_roles_that_may_set_rates_may_import_them(db: Database, api: Api) -> None:
    viewer = Api(api.client, add_key(db, api.tenant, "viewer"))
    r = post_csv(viewer, HISTORY)
    assert r.status_code == 403, r.text

    finance = Api(api.client, add_key(db, api.tenant, "finance"))
    assert post_csv(finance, HISTORY).status_code == 200


def test_the_import_is_documented_in_the_openapi_contract(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/api/v1/fx-rates/import"]["post"]

    assert "text/csv" in operation["requestBody"]["content"]
    assert {"200", "401", "403", "409", "413", "415", "422"} <= set(operation["responses"])
    problem = operation["responses"]["422"]["content"]
    assert list(problem) == ["application/problem+json"]


# --- the command line --------------------------------------------------------------------

runner = CliRunner()


def run_cli(db: Database, *args: str) -> Any:
    result = runner.invoke(cli_app, [*args, "--database-url", db.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_fx_import_from_the_command_line(db: Database, tmp_path: Path) -> None:
    t = make_tenant(db)
    history = tmp_path / "eurofxref-hist.csv"
    history.write_bytes(("\ufeff" + HISTORY.replace("\n", "\r\n")).encode())

    run = run_cli(db, "fx", "import", str(history), "--org", str(t.organization_id))
    assert run.exit_code == 0, run.output
    assert "imported 8 rates for 3 days (2026-11-25 to 2026-11-27)" in run.stdout
    assert "8 created, 0 updated, 0 unchanged" in run.stdout
    assert "skipped retired currencies: BGN, CYP" in run.stdout

    run = run_cli(db, "fx", "import", str(history), "--org", str(t.organization_id), "--json")
    assert run.exit_code == 0, run.output
    assert '"unchanged": 8' in run.stdout


def test_fx_import_from_the_command_line_lists_problems_and_writes_nothing(
    db: Database, tmp_path: Path
) -> None:
    t = make_tenant(db)
    bad = tmp_path / "eurofxref.csv"
    bad.write_text(DAILY.replace("0.9316", "N.A."), encoding="utf-8")

    run = run_cli(db, "fx", "import", str(bad), "--org", str(t.organization_id))
    assert run.exit_code == 1, run.output
    assert "line 2, column CHF: 'N.A.' is not a decimal number" in run.output
    assert "nothing was imported" in run.output
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(FxRate)) == 0

    run = run_cli(db, "fx", "import", str(bad), "--org", "00000000-0000-4000-8000-000000000000")
    assert run.exit_code == 2
    assert "not found" in run.output
    run = run_cli(db, "fx", "import", str(bad), "--org", "acme")
    assert run.exit_code == 2
