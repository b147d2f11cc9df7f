"""``baoke wecom transfer``: a departing advisor's WeCom customers go to a colleague."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from tests.channels.conftest import Outbox
from typer.testing import CliRunner

from baoke import cli
from baoke.channels.loopback.wecom import CORP_ID, SECRET, WecomLoopback
from baoke.errors import InputError


def test_the_customers_and_their_relations_move_to_the_colleague(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [outbox.owner() for _ in range(3)]
    with WecomLoopback() as wecom:
        for cid in people:
            wecom.add_contact(f"wm{cid}", "wx_S1")
        monkeypatch.setenv("BAOKE_DATABASE_URL", outbox.engine.url.render_as_string(False))
        monkeypatch.setenv("BAOKE_DATA_DIR", str(outbox.world.data_dir))
        monkeypatch.setenv("BAOKE_WECOM_SECRET", SECRET)
        monkeypatch.setenv(
            "BAOKE_CHANNELS",
            json.dumps(
                {
                    "wecom": ["wecom"],
                    "providers": {"wecom": {"corp_id": CORP_ID, "endpoint": wecom.url}},
                }
            ),
        )
        with outbox.engine.begin() as conn:  # the advisor left
            conn.execute(text("UPDATE staff SET status = 'departed' WHERE staff_no = 'S1'"))
        done = CliRunner().invoke(cli.app, ["wecom", "transfer", "--from", "S1", "--to", "S2"])
    assert done.exit_code == 0, done.output
    assert "3 of 3 customers handed to S2" in done.output
    staff = outbox.world.frame(
        "SELECT DISTINCT s.staff_no FROM wecom_relations r JOIN staff s ON s.id = r.staff_id "
        "WHERE r.deleted_at IS NULL"
    )["staff_no"].to_list()
    assert staff == ["S2"]
    audit = outbox.world.frame("SELECT action FROM audit_log WHERE entity = 'staff'")
    assert audit["action"].to_list() == ["wecom_transfer"]


def test_an_unknown_staff_member_is_one_clear_error(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_DATABASE_URL", outbox.engine.url.render_as_string(False))
    monkeypatch.setenv("BAOKE_DATA_DIR", str(outbox.world.data_dir))
    done = CliRunner().invoke(cli.app, ["wecom", "transfer", "--from", "S9", "--to", "S2"])
    # The command raises the user's error; `baoke` prints it as one line and exits 2.
    assert isinstance(done.exception, InputError)
    assert str(done.exception) == "staff S9 is not known or has no WeCom userid"
