"""The route table's byte bound (tuning.MAX_ROUTE_BYTES) in the router alone: what it holds is
counted as routes come and go, so a table that filled takes new routes again once they leave.
The end-to-end test of a member announcing huge names is in test_e2e_hostile.py."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from smolmesh import _core, tuning
from smolmesh.router import Link, Router, now_ms


class _Peer:
    """All the router reads of a link whose routes come and go here."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.silent = False
        self.returns_announcements = False


def announce(router: Router, link: _Peer, names: list[bytes]) -> None:
    timestamp = now_ms()
    rows = [
        (_core.CMD_NAME, timestamp, name, _core.make_packet(timestamp, _core.CMD_NAME, name))
        for name in names
    ]
    router.on_triaged(cast(Link, link), rows)


def test_held_bytes_are_counted_as_routes_come_and_go(caplog: pytest.LogCaptureFixture) -> None:
    router = Router([], lambda packets: None)
    size = 60_000
    held = 2 * size + _core.HEADER_LEN  # the announcement and the name
    fits = tuning.MAX_ROUTE_BYTES // held
    first, second = _Peer("first"), _Peer("second")
    with caplog.at_level(logging.WARNING, logger="smolmesh.router"):
        announce(router, first, [b"%06d" % n + b"a" * (size - 6) for n in range(fits + 20)])
    assert len(router.routes) == fits
    assert router.route_bytes == fits * held
    assert [r.getMessage() for r in caplog.records if "table full" in r.getMessage()]

    router.link_down(cast(Link, first))  # every route it brought goes, with its bytes
    assert not router.routes and router.route_bytes == 0
    announce(router, second, [b"short name", b"another"])
    assert len(router.routes) == 2
    assert router.route_bytes == 2 * _core.HEADER_LEN + 2 * len(b"short name" + b"another")
