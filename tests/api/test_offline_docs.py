"""The API documentation pages work without internet: every asset comes from the app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from returnguard.app import create_app
from returnguard.config import Settings


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    # The pages read no table: an empty SQLite file is enough.
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'docs.sqlite3'}", in_process_worker=False
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _links(html: str) -> list[str]:
    """Every URL the page makes a browser load: src/href attributes and script-given URLs."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    in_script = re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", html)
    return attributes + in_script


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"text/javascript", "text/css", "image/png", "application/json"}),
        ("/redoc", {"text/javascript", "image/png", "application/json"}),
    ],
)
def test_docs_page_loads_only_same_origin_assets_that_answer(
    http: TestClient, page: str, expected: set[str]
) -> None:
    r = http.get(page)

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    # No other origin anywhere in the page: no CDN, no web fonts, no validator badge.
    assert "http://" not in r.text and "https://" not in r.text
    links = _links(r.text)
    assert links, r.text
    served = set()
    for url in links:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = http.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"].split(";")[0]
        served.add(kind)
        assert len(asset.content) > 1000, url
    assert served == expected


def test_swagger_ui_asset_is_the_real_bundle(http: TestClient) -> None:
    js = http.get("/docs/assets/swagger-ui-bundle.js")
    css = http.get("/docs/assets/swagger-ui.css")
    redoc = http.get("/docs/assets/redoc.standalone.js")

    assert "SwaggerUIBundle" in js.text
    assert ".swagger-ui" in css.text
    assert "Redoc" in redoc.text


def test_docs_pages_are_not_api_operations(http: TestClient) -> None:
    document = http.get("/openapi.json").json()

    assert not [path for path in document["paths"] if path.startswith(("/docs", "/redoc"))]
    # The unknown-parameter check (kit/guard.py) follows the document: it leaves the pages
    # and their assets alone, as a browser's cache-busting query shows.
    assert http.get("/docs", params={"v": "1"}).status_code == 200
    assert http.get("/docs/assets/swagger-ui.css", params={"v": "1"}).status_code == 200


def test_docs_links_follow_the_proxy_path(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'docs.sqlite3'}", in_process_worker=False
    )
    with TestClient(create_app(settings), root_path="/returns") as client:
        html = client.get("/docs").text

    assert "/returns/openapi.json" in html
    assert "/returns/docs/assets/swagger-ui-bundle.js" in html
