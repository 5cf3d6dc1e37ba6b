"""Demo: roll up the last two weeks, so the dashboard shows the demo data at once."""

import datetime as dt

from analytics import services


def seed() -> int:
    today = services.local_today()
    return services.rollup_range(today - dt.timedelta(days=13), today)
