"""Tests for bot.address: parsing and printing external users' addresses, their masked form and channel label."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.address import Address, InvalidAddress, masked

HANDLES = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=20)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("sms:+15551234567", Address.sms("+15551234567")),
        ("webhook:app/ann", Address.webhook("app", "ann")),
        ("webhook:demo/ann.o+1@x", Address.webhook("demo", "ann.o+1@x")),
    ],
)
def test_parse_reads_both_kinds_and_prints_them_back(text: str, address: Address) -> None:
    assert Address.parse(text) == address
    assert str(address) == text


@pytest.mark.parametrize(
    "text", ["", "sms:", "sms", "webhook:app", "webhook:/ann", "webhook:app/", "mail:ann@example.com", "+15551234567"]
)
def test_parse_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(InvalidAddress):
        Address.parse(text)


def test_a_refusal_never_echoes_the_text_it_refused() -> None:
    with pytest.raises(InvalidAddress) as refused:
        Address.parse("tel:+15551234567")
    assert "555" not in str(refused.value)


@given(client=HANDLES, user=HANDLES)
def test_a_webhook_address_survives_its_string_form(client: str, user: str) -> None:
    address = Address.webhook(client, user)
    assert Address.parse(str(address)) == address


def test_channel_is_what_the_store_keeps_and_kind_is_the_family() -> None:
    assert Address.sms("+15551234567").channel == "sms"
    assert Address.webhook("app", "ann").channel == "webhook:app"
    assert Address.sms("+15551234567").kind == "sms"
    assert Address.webhook("app", "ann").kind == "webhook"


def test_label_names_the_channel_as_display_names_show_it() -> None:
    assert Address.sms("+15551234567").label == "SMS"
    assert Address.webhook("crm", "ann").label == "crm"


def test_masked_hides_a_phone_number_and_leaves_a_webhook_address_alone() -> None:
    assert Address.sms("+15551234567").masked == "sms:+1555***4567"
    assert "1234567" not in Address.sms("+15551234567").masked
    assert Address.webhook("app", "ann").masked == "webhook:app/ann"


def test_masked_user_id_never_shows_text_that_is_not_an_address() -> None:
    assert masked("sms:+15551234567") == "sms:+1555***4567"
    assert masked("webhook:app/ann") == "webhook:app/ann"
    assert masked("+15551234567") == "an unknown address"
