"""Festival dates for care-moment triggers: lunar festivals from a table, fixed ones by rule.

The lunar festivals (Spring Festival, Dragon Boat, Mid-Autumn) move in the Gregorian calendar.
Rather than computing the Chinese calendar (astronomical and easy to get subtly wrong), the
dates below are the official published calendar dates, hard-coded per year; extend the table
when a year is added. A trigger for a year outside the table is reported, never guessed.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["FESTIVALS", "LUNAR_YEARS", "festival_date"]

_D = dt.date

# Official calendar dates (国务院办公厅 holiday notices / the published 农历), 2024-2030.
_LUNAR: dict[str, dict[int, dt.date]] = {
    "spring_festival": {  # 春节, 正月初一
        2024: _D(2024, 2, 10),
        2025: _D(2025, 1, 29),
        2026: _D(2026, 2, 17),
        2027: _D(2027, 2, 6),
        2028: _D(2028, 1, 26),
        2029: _D(2029, 2, 13),
        2030: _D(2030, 2, 3),
    },
    "dragon_boat": {  # 端午节, 五月初五
        2024: _D(2024, 6, 10),
        2025: _D(2025, 5, 31),
        2026: _D(2026, 6, 19),
        2027: _D(2027, 6, 9),
        2028: _D(2028, 5, 28),
        2029: _D(2029, 6, 16),
        2030: _D(2030, 6, 5),
    },
    "mid_autumn": {  # 中秋节, 八月十五
        2024: _D(2024, 9, 17),
        2025: _D(2025, 10, 6),
        2026: _D(2026, 9, 25),
        2027: _D(2027, 9, 15),
        2028: _D(2028, 10, 3),
        2029: _D(2029, 9, 22),
        2030: _D(2030, 9, 12),
    },
}

# Fixed Gregorian festivals: (month, day).
_FIXED: dict[str, tuple[int, int]] = {
    "new_year": (1, 1),  # 元旦
    "womens_day": (3, 8),  # 妇女节
    "labour_day": (5, 1),  # 劳动节
    "childrens_day": (6, 1),  # 儿童节
    "national_day": (10, 1),  # 国庆节
}

FESTIVALS: dict[str, str] = {
    "spring_festival": "春节",
    "dragon_boat": "端午节",
    "mid_autumn": "中秋节",
    "new_year": "元旦",
    "womens_day": "妇女节",
    "labour_day": "劳动节",
    "childrens_day": "儿童节",
    "national_day": "国庆节",
}
"""Festival names a trigger may use, with their Chinese names (for templates and the UI)."""

LUNAR_YEARS = range(2024, 2031)
"""The years for which the lunar festival table has dates."""


def festival_date(name: str, year: int) -> dt.date:
    """The Gregorian date of festival ``name`` in ``year``.

    Raises ``KeyError`` for an unknown festival and ``ValueError`` for a lunar festival in a
    year outside :data:`LUNAR_YEARS` (the table must be extended, not guessed).
    """
    if name in _FIXED:
        month, day = _FIXED[name]
        return dt.date(year, month, day)
    table = _LUNAR[name]
    if year not in table:
        raise ValueError(
            f"no date for {name} in {year}: the lunar festival table covers "
            f"{LUNAR_YEARS.start}-{LUNAR_YEARS.stop - 1}"
        )
    return table[year]
