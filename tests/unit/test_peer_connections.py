"""PeerConnections: the cap per address, and one warning per spell at the cap."""

from __future__ import annotations

import logging

import pytest

from bot.server import PeerConnections


def test_an_address_is_admitted_up_to_the_cap_and_again_once_one_closes() -> None:
    peers = PeerConnections(cap=2)
    assert [peers.admit("a"), peers.admit("a"), peers.admit("a")] == [True, True, False]
    assert peers.admit("b")  # another address counts apart
    peers.release("a")
    assert peers.admit("a") and not peers.admit("a")


def test_no_cap_admits_everyone() -> None:
    peers = PeerConnections(cap=0)
    assert all(peers.admit("a") for _ in range(1000))


def test_a_spell_at_the_cap_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    peers = PeerConnections(cap=4)
    for _ in range(4):
        peers.admit("a")
    for _ in range(3):
        assert not peers.admit("a")
        peers.release("a")  # hovering at the cap: one closes, one more comes
        assert peers.admit("a")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    for _ in range(3):
        peers.release("a")  # below half the cap: the spell is over
    for _ in range(3):
        peers.admit("a")
    assert not peers.admit("a")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
