"""Fixtures for the journey tests: a small world on a fake clock, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.journeys.world import World


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    """A dealer with two staff members and no customers yet."""
    return World(engine, tmp_path / "data")
