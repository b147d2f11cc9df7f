"""Care moments on a fake clock: birthdays, purchase anniversaries, the Spring Festival.

Every greeting enrols at 00:00 of its day and waits for the morning window, 09:00-12:00,
before it goes out (WeCom, else SMS): a birthday, a purchase anniversary, a festival. Only
owners are greeted (the audience), and a customer greeted less than 7 days ago is left in
peace (the cool-down). A car delivered on 29 February has its anniversary on 28 February
in other years.
"""

from __future__ import annotations

import datetime as dt

from tests.journeys.world import World

from baoke.playbooks.festivals import festival_date
from baoke.store import models as m

BOOK = "care_moments"
SPRING = festival_date("spring_festival", 2026)  # 17 February 2026
BOUGHT = dt.date(2024, 6, 15)  # no anniversary in February


def _at(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def feb(day: int) -> dt.date:
    return dt.date(2026, 2, day)


def test_birthdays_anniversaries_and_the_spring_festival(world: World) -> None:
    assert dt.date(2026, 2, 17) == SPRING
    # Birthday three days before the festival: the festival greeting falls in the cool-down.
    recent = world.owner(name="李娜", title="女士", delivered=BOUGHT, birthday=dt.date(1988, 2, 14))
    # Birthday eleven days after it: both greetings.
    later = world.owner(name="王芳", title="女士", delivered=BOUGHT, birthday=dt.date(1990, 2, 28))
    # Delivered on 29 February 2024: the anniversary is on 28 February in 2026.
    leap = world.owner(name="赵勇", delivered=dt.date(2024, 2, 29))
    # Not an owner (a prospect): no greetings, birthday or festival.
    prospect = world.insert(
        m.Customer,
        mobile="+8613900000001",
        name="陈静",
        title="女士",
        home_dealer_id=1,
        birthday=dt.date(1992, 2, 14),
    )

    world.run(feb(14))
    assert world.touches(recent, BOOK) == [("birthday_wish", "wecom,sms", _at(feb(14), 9))]
    (journey,) = world.journeys(recent, BOOK)
    assert (journey["trigger"], journey["status"]) == ("birthday", "completed")
    assert [(a, s) for a, s, _ in world.decisions(journey["id"])] == [
        ("enrol", None),
        ("wait", "morning"),
        ("branch", "route_birthday"),
        ("send", "birthday_wish"),
    ]
    for cid in (later, leap, prospect):
        assert world.journeys(cid, BOOK) == []

    # Spring Festival: every owner enrols at 00:00 and is greeted at 09:00.
    world.run(SPRING)
    for cid in (later, leap):
        assert world.touches(cid, BOOK) == [("festival_greeting", "wecom,sms", _at(SPRING, 9))]
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["trigger"], journey["status"]) == ("spring_festival", "completed")
        decisions = world.decisions(journey["id"])
        assert decisions[0] == ("enrol", None, "春节 2026")
        assert decisions[1] == (
            "wait",
            "morning",
            f"wait until 09:00-12:00 local time (until {SPRING} 09:00)",
        )
        assert decisions[-1] == (
            "send",
            "festival_greeting",
            "candidate care message 'festival_greeting' on wecom > sms",
        )
    # Greeted three days ago: in the cool-down.
    assert len(world.journeys(recent, BOOK)) == 1
    assert len(world.touches(recent, BOOK)) == 1
    assert world.journeys(prospect, BOOK) == []

    # The same day again creates nothing.
    before = world.counts()
    world.run(SPRING)
    assert world.counts() == before

    # 28 February: a birthday, and the anniversary of a car delivered on 29 February.
    world.run(feb(28))
    assert world.touches(later, BOOK)[1:] == [("birthday_wish", "wecom,sms", _at(feb(28), 9))]
    assert world.touches(leap, BOOK)[1:] == [("anniversary", "wecom,sms", _at(feb(28), 9))]
    journey = world.journeys(leap, BOOK)[-1]
    assert (journey["trigger"], journey["status"]) == ("purchase_anniversary", "completed")
    assert [(a, s) for a, s, _ in world.decisions(journey["id"])] == [
        ("enrol", None),
        ("wait", "morning"),
        ("branch", "route_birthday"),
        ("branch", "route_anniversary"),
        ("send", "anniversary"),
    ]
    assert world.journeys(prospect, BOOK) == []
    assert len(world.touches(recent, BOOK)) == 1
    for cid in (recent, later, leap, prospect):
        assert world.tasks(cid, BOOK) == []
