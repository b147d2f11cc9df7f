"""The shipped arms come out the way the seed articles report, from the mechanics alone.

Seed 000 and DOMAIN scenario 2: WeCom-led + SMS earns more service visits than SMS only at a
small extra cost; every channel at full blast raises complaints and WeCom blocks and loses
customers. Nothing in the arms or the model states those outcomes: they follow from WeCom's
higher interaction rates and from fatigue above each customer's tolerance. Fixed seeds keep
the run reproducible; every arm runs the same group, and is measured on all of it, so the
comparison is not left to the luck of a small random split.
"""

from __future__ import annotations

import time

import pytest

from baoke.config import Settings
from baoke.simulate.arms import Arm, load_arm
from baoke.simulate.compare import compare
from baoke.simulate.generator import GenerateConfig, generate
from baoke.simulate.model import load_model
from baoke.simulate.report import Measures
from baoke.simulate.session import import_group, simulate_group

CUSTOMERS = 1_200
DAYS = 75


@pytest.fixture(scope="module")
def headlines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    root = tmp_path_factory.mktemp("arms")
    generated = generate(GenerateConfig(customers=CUSTOMERS, seed=42), root / "files")
    model = load_model()

    def run_arm(settings: Settings, arm: Arm, index: int) -> tuple[Measures, float]:
        started = time.perf_counter()
        run = import_group(settings, root / "files", generated.config.today)
        measures = simulate_group(run, model, generated.config.today, DAYS, seed=7)
        run.engine.dispose()
        return measures, time.perf_counter() - started

    arms = [load_arm(name) for name in ("sms_only", "wecom_led", "full_blast")]
    results = compare(Settings(data_dir=root / "data"), arms, root, 7, run_arm)
    return {r.arm.name: r.measures.headline() for r in results}


def test_wecom_led_earns_more_visits_than_sms_only_at_a_small_extra_cost(
    headlines: dict[str, dict[str, float]],
) -> None:
    sms, wecom = headlines["sms_only"], headlines["wecom_led"]
    assert wecom["visit_rate"] > sms["visit_rate"] + 0.02
    assert wecom["visits"] > sms["visits"]
    assert wecom["cost_yuan"] < 1.25 * sms["cost_yuan"]
    assert wecom["satisfaction"] > sms["satisfaction"]


def test_full_blast_raises_complaints_and_blocks_and_loses_customers(
    headlines: dict[str, dict[str, float]],
) -> None:
    wecom, blast = headlines["wecom_led"], headlines["full_blast"]
    assert blast["complaints"] > 2 * max(wecom["complaints"], 1)
    assert blast["blocks"] > 2 * max(wecom["blocks"], 1)
    assert blast["unsubscribes"] > 2 * max(wecom["unsubscribes"], 1)
    assert blast["churned"] > wecom["churned"] + 0.02
    assert blast["satisfaction"] < wecom["satisfaction"]
    assert blast["cost_yuan"] > wecom["cost_yuan"]
