"""Payment providers refunds are paid through, and the checks on their configuration."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from returnguard.errors import InvalidInput
from returnguard.refunds.providers import paypal, shopify, stripe
from returnguard.refunds.providers.base import RefundAdapter

KINDS = ("manual", "shopify", "stripe", "paypal")
_SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
_API_VERSION = re.compile(r"^\d{4}-(01|04|07|10)$")

# Per kind: settings (name -> default, None when required) and required credentials.
_SETTINGS: dict[str, dict[str, str | None]] = {
    "manual": {},
    "shopify": {"shop_domain": None, "api_version": shopify.DEFAULT_API_VERSION},
    "stripe": {"base_url": stripe.DEFAULT_BASE_URL},
    "paypal": {"base_url": paypal.DEFAULT_BASE_URL},
}
_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "manual": (),
    "shopify": ("access_token",),
    "stripe": ("api_key",),
    "paypal": ("client_id", "client_secret"),
}


def check_config(
    kind: str, settings: dict[str, Any], credentials: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """The provider's settings with defaults filled in, or InvalidInput naming the field."""
    if kind not in KINDS:
        raise InvalidInput.field("kind", f"must be one of {', '.join(KINDS)}")
    known = _SETTINGS[kind]
    clean: dict[str, str] = {}
    for name in settings:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise InvalidInput.field(f"settings.{name}", f"is not a {kind} setting ({allowed})")
    for name, default in known.items():
        value = settings.get(name, default)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput.field(f"settings.{name}", "is required")
        clean[name] = value.strip()
    if "shop_domain" in clean and not _SHOP_DOMAIN.match(clean["shop_domain"]):
        raise InvalidInput.field("settings.shop_domain", "must look like your-shop.myshopify.com")
    if "api_version" in clean and not _API_VERSION.match(clean["api_version"]):
        raise InvalidInput.field("settings.api_version", "must be a Shopify version like 2026-01")
    if "base_url" in clean:
        try:
            url = urlsplit(clean["base_url"])
            url.port  # noqa: B018 - raises ValueError when the port is out of range
        except ValueError:
            raise InvalidInput.field("settings.base_url", "must be an https:// URL") from None
        if url.scheme != "https" or not url.hostname:
            raise InvalidInput.field("settings.base_url", "must be an https:// URL")
    secrets: dict[str, str] = {}
    for name in credentials:
        if name not in _CREDENTIALS[kind]:
            raise InvalidInput.field(f"credentials.{name}", f"is not a {kind} credential")
    for name in _CREDENTIALS[kind]:
        value = credentials.get(name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput.field(f"credentials.{name}", "is required")
        secrets[name] = value.strip()
    if kind == "stripe" and not secrets["api_key"].startswith(("sk_", "rk_")):
        raise InvalidInput.field(
            "credentials.api_key", "must be a Stripe secret or restricted key (sk_… or rk_…)"
        )
    return clean, secrets


def adapter_for(
    kind: str, settings: dict[str, Any], credentials: dict[str, Any], http: httpx.Client
) -> RefundAdapter:
    if kind == "shopify":
        return shopify.ShopifyAdapter(
            http,
            shop_domain=settings["shop_domain"],
            access_token=credentials["access_token"],
            api_version=settings.get("api_version", shopify.DEFAULT_API_VERSION),
        )
    if kind == "stripe":
        return stripe.StripeAdapter(
            http, api_key=credentials["api_key"], base_url=settings["base_url"]
        )
    if kind == "paypal":
        return paypal.PayPalAdapter(
            http,
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
            base_url=settings["base_url"],
        )
    raise ValueError(f"no adapter for provider kind {kind!r}")
