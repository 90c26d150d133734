"""What a call costs: tokens times the model's price, in USD, or None if unknown.

Prices come from the ``genai-prices`` library (a maintained table of providers
and models), unless both price settings are given, which then win. A model the
library does not know, on a provider it does not recognise, has no price: its
cost is None, never zero.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlsplit

from genai_prices import Usage, calc_price

from image_tagger.settings import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
_MTOK = Decimal(1_000_000)


def base_url(settings: Settings) -> str:
    """The provider's base URL; OpenAI's when only an API key is set."""
    return (settings.vlm_base_url or OPENAI_BASE_URL).rstrip("/")


def provider_name(settings: Settings) -> str:
    """The provider as the ledger names it: as set, as the price table knows
    the base URL, or else the URL's host (a local server, say)."""
    if settings.vlm_provider:
        return settings.vlm_provider
    return _provider_for(base_url(settings), settings.vlm_model or "")


@lru_cache(maxsize=32)
def _provider_for(url: str, model: str) -> str:
    try:
        found = calc_price(
            Usage(input_tokens=0, output_tokens=0), model, provider_api_url=url
        )
    except LookupError:
        return urlsplit(url).netloc or url
    return found.provider.id


def call_cost(
    settings: Settings, model: str, *, input_tokens: int, output_tokens: int
) -> Decimal | None:
    """The USD cost of a call with these tokens, or None when the price is unknown."""
    if settings.vlm_price_input_per_mtok_usd is not None:
        price_in = Decimal(str(settings.vlm_price_input_per_mtok_usd))
        price_out = Decimal(str(settings.vlm_price_output_per_mtok_usd))
        return (input_tokens * price_in + output_tokens * price_out) / _MTOK

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    try:
        if settings.vlm_provider:
            found = calc_price(usage, model, provider_id=settings.vlm_provider)
        else:
            found = calc_price(usage, model, provider_api_url=base_url(settings))
    except (LookupError, ValueError):  # no price for the model, or odd usage
        return None
    return found.total_price
