"""What the provider adapter tests share: a fake served for the length of a fixture, a send
that must fail, and the outcomes of a send."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pytest

from baoke.channels.loopback.base import LoopbackServer
from baoke.channels.protocol import Adapter, Message, ProviderError

Fake = TypeVar("Fake", bound=LoopbackServer)


def serve(fake: Fake) -> Iterator[Fake]:
    """Start ``fake``, yield it, and stop it afterwards (for a fixture: ``yield from``)."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def refusal(adapter: Adapter, batch: Sequence[Message]) -> pytest.ExceptionInfo[ProviderError]:
    """Send ``batch``, which must raise ProviderError, and close ``adapter``."""
    try:
        with pytest.raises(ProviderError) as caught:
            adapter.send(batch)
    finally:
        adapter.close()
    return caught


def outcomes(results: Sequence[Any]) -> dict[int, str]:
    """Each touch's outcome."""
    return {r.touch_id: r.outcome for r in results}
