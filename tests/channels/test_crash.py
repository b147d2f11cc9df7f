"""A dispatcher killed with SIGKILL in the middle of a batch loses nothing and sends nothing
twice: the restarted one reconciles what was in flight with the provider and sends the rest.

The dispatcher runs as the real ``baoke dispatch`` command in a child process; the provider
is the Aliyun loopback gateway in this process, which keeps what it received across the
kill. The gateway answers each batch a second late, so the kill lands while a batch it has
already accepted waits for its answer (the worst moment: sent, but not recorded).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.channels.conftest import Outbox

from baoke.channels.loopback.aliyun import AliyunSmsServer

KEY_ID, KEY_SECRET = "LTAI5tLoopbackKeyId", "loopback-aliyun-secret"
TOUCHES = 60


def _environment(outbox: Outbox, gateway: AliyunSmsServer, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOKE_")}
    env.update(
        {
            "BAOKE_DATABASE_URL": outbox.engine.url.render_as_string(hide_password=False),
            "BAOKE_DATA_DIR": str(data_dir),
            "BAOKE_ALIYUN_ACCESS_KEY_ID": KEY_ID,
            "BAOKE_ALIYUN_ACCESS_KEY_SECRET": KEY_SECRET,
            "BAOKE_CHANNELS": json.dumps(
                {
                    "sms": ["aliyun"],
                    "providers": {
                        "aliyun": {
                            "endpoint": gateway.url,
                            "sign_name": "保客汽车服务",
                            "templates": {"service_calendar/maintenance_booking": "SMS_100001"},
                            "timeout": 10,
                        }
                    },
                }
            ),
            # Small claims, one request each; a short lease so the restart may recover soon.
            "BAOKE_DISPATCH": json.dumps({"claim_size": 10, "concurrency": 1, "lease_seconds": 2}),
            # Whatever the hour of the test run, it is inside the sending hours.
            "BAOKE_POLICY": json.dumps(
                {"quiet_hours": ["00:00", "23:59:59"], "service_hours": ["00:00", "23:59:59"]}
            ),
        }
    )
    return env


def _dispatch(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "baoke", "dispatch", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_kill_mid_batch_neither_loses_nor_repeats_a_message(
    outbox: Outbox, tmp_path: Path
) -> None:
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    touches = [outbox.schedule(outbox.owner(), "sms", due=due) for _ in range(TOUCHES)]
    phones = set(
        outbox.world.frame(
            "SELECT c.mobile FROM customers c JOIN touches t ON t.customer_id = c.id"
        )["mobile"].to_list()
    )
    with AliyunSmsServer(KEY_ID, KEY_SECRET) as gateway:
        gateway.mode, gateway.hang_seconds = "timeout", 1.0  # accepts, answers a second late
        env = _environment(outbox, gateway, tmp_path / "data")
        first = _dispatch(env)
        deadline = time.monotonic() + 60
        while gateway.requests < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The third batch is accepted and waiting for its answer: kill now.
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_with = sum(gateway.accepted.values())
        assert 0 < killed_with < TOUCHES

        gateway.mode = "ok"
        time.sleep(2.5)  # the dead claim's lease runs out
        second = _dispatch(env)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()
        result = json.loads(out)

    received = Counter(record["phone"] for record in gateway.records)
    # The gateway keeps numbers in their national form.
    assert set(received) == {p.removeprefix("+86") for p in phones}
    assert set(received.values()) == {1}, "a customer got the message twice"
    assert result["recovered_sent"] >= 1  # the batch in flight was found at the provider
    statuses = outbox.world.frame("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    assert statuses.to_dicts() == [{"status": "sent", "n": len(touches)}]
