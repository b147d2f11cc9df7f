"""Receipts that must be fetched: a WeCom mass-send result marks its touch delivered, once."""

from __future__ import annotations

import pytest
from tests.channels.conftest import NINE, Outbox

from baoke.channels.dispatcher import Dispatcher
from baoke.channels.loopback.wecom import CORP_ID, SECRET, WecomLoopback
from baoke.channels.receipts import poll


def test_wecom_results_are_fetched_and_applied_once(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_WECOM_SECRET", SECRET)
    first, second = outbox.owner(), outbox.owner()
    with WecomLoopback() as wecom:
        wecom.add_contact(f"wm{first}", "wx_S1")  # the second is no longer a contact
        settings = outbox.settings(
            channels={
                "wecom": ["wecom"],
                "providers": {"wecom": {"corp_id": CORP_ID, "endpoint": wecom.url}},
            }
        )
        reached = outbox.schedule(first, "wecom", template="usage_notes")
        refused = outbox.schedule(second, "wecom", template="usage_notes")
        done = outbox.dispatch(settings)
        assert (done.sent, done.failed) == (1, 1)
        assert outbox.row(refused)["last_error"].startswith("wecom: in fail_list")

        applied = poll(settings, outbox.engine, now=NINE)
        assert (applied.stored, applied.unmatched) == (1, 0)
        assert outbox.row(reached)["touch_status"] == "delivered"
        assert outbox.history(reached) == ["sent", "delivered"]

        again = poll(settings, outbox.engine, now=NINE)
    assert again.stored == 0  # delivered touches are not asked about again
    assert outbox.history(reached) == ["sent", "delivered"]


def test_the_dispatch_service_fetches_receipts_as_it_goes(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_WECOM_SECRET", SECRET)
    cid = outbox.owner()
    with WecomLoopback() as wecom:
        wecom.add_contact(f"wm{cid}", "wx_S1")
        settings = outbox.settings(
            channels={
                "wecom": ["wecom"],
                "providers": {"wecom": {"corp_id": CORP_ID, "endpoint": wecom.url}},
            },
            dispatch={"poll_seconds": 0.05},
        )
        touch = outbox.schedule(cid, "wecom", template="usage_notes")
        dispatcher = Dispatcher(settings, outbox.engine, clock=lambda: NINE)
        try:
            # As `baoke dispatch --forever`: the first pass sends, a later one fetches.
            dispatcher.run(until_empty=False, max_seconds=0.5)
        finally:
            dispatcher.close()
    assert outbox.history(touch) == ["sent", "delivered"]
