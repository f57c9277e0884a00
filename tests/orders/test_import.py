"""CSV order import: good orders land exactly, bad rows are reported by line and column."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from returnguard.auth.service import Actor
from returnguard.cli import app
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit.db import Database
from returnguard.orders import repository as repo
from returnguard.orders.endpoints import order_out
from returnguard.orders.importer import COLUMNS, ImportReport, import_orders_csv
from returnguard.orders.models import Order
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderOut
from returnguard.orders.service import create_channel
from tests.conftest import make_tenant

Row = dict[str, str]


def order_row(order_id: str, line_id: str = "item-1", **cells: str) -> Row:
    """A valid EUR row for amazon-de; keyword arguments override single cells."""
    row = {
        "channel": "amazon-de",
        "order_id": order_id,
        "ordered_at": "2026-10-01T10:00:00+02:00",
        "delivered_at": "2026-10-03",
        "currency": "EUR",
        "captured": "19.99",
        "shipping": "",
        "buyer_id": f"buyer-{order_id}",
        "buyer_email": "anna@example.de",
        "buyer_name": "Anna Muster",
        "buyer_country": "DE",
        "ship_to_country": "DE",
        "line_id": line_id,
        "sku": "MUG-BLUE",
        "title": "Blue mug",
        "quantity": "1",
        "unit_price": "19.99",
        "tax": "",
        "discount": "",
        "asin": "",
        "category": "kitchen",
    }
    row.update(cells)
    return row


def jpy_row(order_id: str, **cells: str) -> Row:
    jpy = {
        "channel": "amazon-jp",
        "currency": "JPY",
        "captured": "3960",
        "quantity": "2",
        "unit_price": "1980",
        "buyer_country": "JP",
        "ship_to_country": "JP",
    }
    return order_row(order_id, **(jpy | cells))


def write_csv(path: Path, rows: list[Row], columns: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def org(db: Database) -> uuid.UUID:
    """A tenant with channels amazon-de (EUR) and amazon-jp (JPY)."""
    org_id = make_tenant(db).organization_id
    actor = Actor.system(org_id, "test")
    with db.session() as session:
        for code, country, currency in [("amazon-de", "DE", "EUR"), ("amazon-jp", "JP", "JPY")]:
            create_channel(
                session,
                actor,
                ChannelIn(
                    code=code,
                    name=code,
                    marketplace=Marketplace.AMAZON,
                    country=country,
                    currency=currency,
                ),
            )
    return org_id


def stored_order(db: Database, org_id: uuid.UUID, channel: str, order_id: str) -> OrderOut | None:
    """The order as the API would show it, or None when it was not imported."""
    with db.session() as session:
        found = repo.channel_by_code(session, org_id, channel)
        assert found is not None
        order = repo.order_by_external_id(session, found.id, order_id)
        return order_out(session, order) if order is not None else None


def order_count(db: Database, org_id: uuid.UUID) -> int:
    with db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Order).where(Order.organization_id == org_id)
        )
        return int(count or 0)


def located(report: ImportReport) -> set[tuple[int, str]]:
    return {(p.line, p.field) for p in report.problems}


def assert_reconciles(report: ImportReport) -> None:
    assert report.rows_read == report.rows_imported + report.rows_rejected
    assert report.rows_rejected == len({p.line for p in report.problems})


def test_good_file_imports_orders_with_exact_amounts(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    # The two EUR rows of order A are not adjacent: rows group by (channel, order_id).
    path = write_csv(
        tmp_path / "orders.csv",
        [
            order_row("A-1", "a1", captured="45.97", shipping="4.99", tax="3.19"),
            jpy_row("J-1", ordered_at="2026-10-02T09:30:00", delivered_at=""),
            order_row(
                "A-1",
                "a2",
                captured="45.97",
                shipping="4.99",
                sku="MUG-RED",
                title="Red mug",
                quantity="2",
                unit_price="10.50",
                discount="0.01",
                asin="B000000001",
            ),
        ],
    )

    report = import_orders_csv(db, org, path)

    assert report.problems == []
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (3, 3, 0)
    assert (report.orders_created, report.orders_updated, report.orders_unchanged) == (2, 0, 0)
    assert report.summary() == "read 3 rows: imported 3, rejected 0 (orders created 2, updated 0)"

    eur = stored_order(db, org, "amazon-de", "A-1")
    assert eur is not None
    assert (eur.captured.amount, eur.captured.currency) == ("45.97", "EUR")
    assert eur.shipping.amount == "4.99"
    assert eur.ordered_at == datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    assert eur.delivered_at == datetime(2026, 10, 3, tzinfo=UTC)  # a date is midnight UTC
    assert eur.buyer is not None and eur.buyer.email == "anna@example.de"
    assert [(ln.external_id, ln.sku, ln.quantity) for ln in eur.lines] == [
        ("a1", "MUG-BLUE", 1),
        ("a2", "MUG-RED", 2),
    ]
    assert [ln.unit_price.amount for ln in eur.lines] == ["19.99", "10.50"]
    assert [ln.tax.amount for ln in eur.lines] == ["3.19", "0.00"]
    assert [ln.discount.amount for ln in eur.lines] == ["0.00", "0.01"]

    jpy = stored_order(db, org, "amazon-jp", "J-1")
    assert jpy is not None
    assert (jpy.captured.amount, jpy.captured.currency) == ("3960", "JPY")
    assert jpy.lines[0].unit_price.amount == "1980"
    assert jpy.ordered_at == datetime(2026, 10, 2, 9, 30, tzinfo=UTC)  # naive means UTC
    assert jpy.delivered_at is None


def test_reimport_updates_the_order_instead_of_duplicating_it(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [order_row("A-1"), jpy_row("J-1")]
    path = write_csv(tmp_path / "orders.csv", rows)
    import_orders_csv(db, org, path)

    again = import_orders_csv(db, org, path)

    assert (again.rows_imported, again.rows_rejected) == (2, 0)
    assert (again.orders_created, again.orders_updated, again.orders_unchanged) == (0, 0, 2)
    assert order_count(db, org) == 2

    rows[0] = order_row("A-1", captured="17.99", unit_price="17.99")
    changed = import_orders_csv(db, org, write_csv(tmp_path / "changed.csv", rows))

    assert (changed.orders_created, changed.orders_updated, changed.orders_unchanged) == (0, 1, 1)
    assert order_count(db, org) == 2
    order = stored_order(db, org, "amazon-de", "A-1")
    assert order is not None and order.captured.amount == "17.99"


def test_bad_rows_are_reported_by_line_and_column_and_good_orders_still_import(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [
        order_row("GOOD-1"),  # line 2
        order_row("B-1", quantity="0"),  # 3
        order_row("B-2", quantity="abc"),  # 4
        order_row("B-3", quantity="1.5"),  # 5
        order_row("B-4", unit_price="1.999"),  # 6
        order_row("B-5", channel="ebay-fr"),  # 7
        order_row("B-6", currency="ZZZ"),  # 8
        order_row("B-7", sku=""),  # 9
        order_row("B-8", "b8-1", captured="10.00"),  # 10
        jpy_row("GOOD-2"),  # 11
        order_row("B-8", "b8-2", captured="12.00"),  # 12: captured differs from line 10
        order_row("B-9", "b9-1"),  # 13: fine itself, but its order has a bad row
        order_row("B-9", "b9-2", quantity="-1"),  # 14
    ]
    path = write_csv(tmp_path / "orders.csv", rows)

    report = import_orders_csv(db, org, path)

    assert located(report) == {
        (3, "quantity"),
        (4, "quantity"),
        (5, "quantity"),
        (6, "unit_price"),
        (7, "channel"),
        (8, "currency"),
        (9, "sku"),
        (10, "order_id"),
        (12, "captured"),
        (13, "order_id"),
        (14, "quantity"),
    }
    messages = {(p.line, p.field): p.message for p in report.problems}
    assert "whole number" in messages[4, "quantity"] and "'abc'" in messages[4, "quantity"]
    assert "whole number" in messages[5, "quantity"] and "'1.5'" in messages[5, "quantity"]
    assert "greater than 0" in messages[3, "quantity"]
    assert "more decimal places than EUR allows" in messages[6, "unit_price"]
    assert "ebay-fr" in messages[7, "channel"]
    assert "ZZZ" in messages[8, "currency"]
    assert messages[9, "sku"] == "is required"
    assert "line 10" in messages[12, "captured"]
    assert messages[10, "order_id"] == "order B-8 rejected: see line 12"
    assert messages[13, "order_id"] == "order B-9 rejected: see line 14"
    assert len(report.problems) == 11  # one per bad cell, not repeated per amount
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (13, 2, 11)
    assert_reconciles(report)

    assert stored_order(db, org, "amazon-de", "GOOD-1") is not None
    assert stored_order(db, org, "amazon-jp", "GOOD-2") is not None
    assert order_count(db, org) == 2


def test_every_bad_cell_of_a_row_is_reported_at_once(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        [order_row("B-1", quantity="two", unit_price="abc", ordered_at="yesterday", asin="x")],
    )

    report = import_orders_csv(db, org, path)

    assert located(report) == {
        (2, "ordered_at"),
        (2, "quantity"),
        (2, "unit_price"),
        (2, "asin"),
    }
    assert_reconciles(report)


def test_order_level_problems_are_reported_on_every_row_with_the_other_problems(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    late = {"delivered_at": "2026-09-30", "buyer_country": "XX"}
    path = write_csv(
        tmp_path / "orders.csv",
        [order_row("A-1", "a1", **late), order_row("A-1", "a2", quantity="0", **late)],
    )

    report = import_orders_csv(db, org, path)

    assert located(report) == {
        (2, "buyer_country"),
        (3, "buyer_country"),
        (3, "quantity"),
    }
    fixed = {"delivered_at": "2026-09-30"}
    path = write_csv(tmp_path / "late.csv", [order_row("A-1", "a1", channel="x", **fixed)])

    report = import_orders_csv(db, org, path)

    assert {(p.field, p.message) for p in report.problems} == {
        ("channel", "no channel with code 'x'"),
        ("delivered_at", "is before ordered_at"),
    }


def test_a_bad_row_never_half_updates_an_existing_order(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    good = [order_row("A-1", "a1"), order_row("A-1", "a2", sku="MUG-RED")]
    import_orders_csv(db, org, write_csv(tmp_path / "first.csv", good))
    bad = [order_row("A-1", "a1", unit_price="1.00"), order_row("A-1", "a2", quantity="")]

    report = import_orders_csv(db, org, write_csv(tmp_path / "second.csv", bad))

    assert located(report) == {(2, "order_id"), (3, "quantity")}
    assert report.rows_imported == 0
    order = stored_order(db, org, "amazon-de", "A-1")
    assert order is not None
    assert [(ln.external_id, ln.unit_price.amount) for ln in order.lines] == [
        ("a1", "19.99"),
        ("a2", "19.99"),
    ]


def test_a_channel_of_another_organization_is_unknown(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    other = make_tenant(db, "Other GmbH").organization_id
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1")])

    report = import_orders_csv(db, other, path)

    assert located(report) == {(2, "channel")}
    assert order_count(db, org) == 0


def test_bom_crlf_and_decimal_commas_are_accepted(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    header = "channel,order_id,ordered_at,currency,captured,line_id,sku,quantity,unit_price"
    lines = [
        header,
        'amazon-de,C-1,2026-10-01,EUR,"39,98",c1,MUG-BLUE,2,"19,99"',
        'amazon-de,C-1,2026-10-01,EUR,"39,98",c2,MUG-RED,1,"0"',
    ]
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")

    report = import_orders_csv(db, org, path)

    assert report.problems == []
    assert (report.rows_read, report.orders_created) == (2, 1)
    order = stored_order(db, org, "amazon-de", "C-1")
    assert order is not None
    assert order.captured.amount == "39.98"
    assert [ln.unit_price.amount for ln in order.lines] == ["19.99", "0.00"]


def test_semicolon_separated_file_with_decimal_commas_and_loose_header_is_accepted(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = tmp_path / "excel-de.csv"
    path.write_text(
        " Channel ;Order_ID;ordered_at;currency;captured;line_id;sku;quantity;unit_price\r\n"
        "amazon-de;S-1;2026-10-01;EUR;19,99;s1;MUG-BLUE;1;19,99\r\n",
        encoding="utf-8-sig",
    )

    report = import_orders_csv(db, org, path)

    assert report.problems == []
    order = stored_order(db, org, "amazon-de", "S-1")
    assert order is not None and order.captured.amount == "19.99"


def test_thousands_separators_are_refused_not_misread(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "orders.csv", [jpy_row("J-1", captured="3,960")])

    report = import_orders_csv(db, org, path)

    assert located(report) == {(2, "captured")}
    assert order_count(db, org) == 0


def test_missing_header_columns_raise_invalid_input_naming_them(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    columns = tuple(c for c in COLUMNS if c not in ("sku", "quantity"))
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1")], columns)

    with pytest.raises(InvalidInput) as caught:
        import_orders_csv(db, org, path)

    assert "sku" in caught.value.detail and "quantity" in caught.value.detail
    assert {e["field"] for e in caught.value.errors} == {"sku", "quantity"}
    assert order_count(db, org) == 0


def test_unknown_column_is_refused_rather_than_ignored(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        [order_row("A-1") | {"delivered": "2026-10-03"}],
        (*COLUMNS, "delivered"),
    )

    with pytest.raises(InvalidInput, match="delivered"):
        import_orders_csv(db, org, path)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf\r\n"])
def test_empty_file_raises_invalid_input(
    db: Database, org: uuid.UUID, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)

    with pytest.raises(InvalidInput, match="empty"):
        import_orders_csv(db, org, path)


def test_a_file_that_is_not_utf8_raises_invalid_input(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(COLUMNS).encode() + "\nK\xf6ln".encode("latin-1"))

    with pytest.raises(InvalidInput, match="UTF-8"):
        import_orders_csv(db, org, path)


def test_unknown_organization_raises_not_found(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1")])

    with pytest.raises(NotFound):
        import_orders_csv(db, uuid.uuid4(), path)


def test_row_with_wrong_number_of_cells_rejects_its_order(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1"), order_row("B-1")])
    with path.open("a", encoding="utf-8", newline="") as f:
        f.write("amazon-de,A-1,2026-10-01,,EUR,19.99\r\n")

    report = import_orders_csv(db, org, path)

    assert located(report) == {(2, "order_id"), (4, "row")}
    assert report.problems[-1].message == "has 6 cells but the header has 22"
    assert report.rows_imported == 1
    assert_reconciles(report)


def test_progress_is_shown_on_a_terminal(db: Database, org: uuid.UUID, tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1"), jpy_row("J-1")])

    report = import_orders_csv(db, org, path, console=console)

    assert report.orders_created == 2
    assert "importing orders" in screen.getvalue()


def run_cli(db: Database, org_id: uuid.UUID, path: Path, *extra: str) -> tuple[int, str, str]:
    args = ["import", "orders", str(path), "--org", str(org_id), "--database-url", db.url]
    result = CliRunner().invoke(app, [*args, *extra])
    return result.exit_code, result.stdout, result.stderr


def test_cli_imports_a_good_file_and_exits_zero(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1"), jpy_row("J-1")])

    code, out, _ = run_cli(db, org, path)

    assert code == 0
    assert "read 2 rows: imported 2, rejected 0 (orders created 2, updated 0)" in out
    assert order_count(db, org) == 2


def test_cli_reports_rejected_rows_exits_one_and_writes_the_errors_file(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [order_row("A-1"), order_row("B-1", quantity="abc"), jpy_row("J-1", currency="XYZ")]
    path = write_csv(tmp_path / "orders.csv", rows)
    errors = tmp_path / "out.csv"

    code, out, err = run_cli(db, org, path, "--errors", str(errors))

    assert code == 1
    assert "read 3 rows: imported 1, rejected 2 (orders created 1, updated 0)" in out
    assert "line 3: quantity: must be a whole number of units, got 'abc'" in err
    assert "line 4: currency: unknown currency code 'XYZ'" in err
    with errors.open(encoding="utf-8", newline="") as f:
        written = list(csv.DictReader(f))
    assert [(r["line"], r["order_id"], r["quantity"]) for r in written] == [
        ("3", "B-1", "abc"),
        ("4", "J-1", "2"),
    ]
    assert written[0]["reason"] == "quantity: must be a whole number of units, got 'abc'"
    assert written[1]["reason"].startswith("currency: unknown currency code 'XYZ'")


def test_corrected_errors_file_can_be_imported_again(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1"), order_row("B-1", quantity="x")])
    errors = tmp_path / "errors.csv"
    run_cli(db, org, path, "--errors", str(errors))
    errors.write_text(errors.read_text(encoding="utf-8").replace(",x,", ",3,"), encoding="utf-8")

    code, out, _ = run_cli(db, org, errors)

    assert code == 0, out
    order = stored_order(db, org, "amazon-de", "B-1")
    assert order is not None and order.lines[0].quantity == 3


def test_cli_exits_two_with_the_reason_when_header_columns_are_missing(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    columns = tuple(c for c in COLUMNS if c != "unit_price")
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1")], columns)

    code, _, err = run_cli(db, org, path)

    assert code == 2
    assert "error: header row: missing required column(s): unit_price" in err


def test_cli_exits_two_for_an_unknown_organization(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "orders.csv", [order_row("A-1")])

    code, _, err = run_cli(db, uuid.uuid4(), path)

    assert code == 2
    assert "error: organization" in err and "not found" in err
