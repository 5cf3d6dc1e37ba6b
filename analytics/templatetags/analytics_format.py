from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f} %"


@register.filter
def minutes(value) -> str:
    if value is None:
        return "-"
    return f"{value} min" if value < 120 else f"{value / 60:.1f} h"


@register.filter
def points(value) -> str:
    """A difference of two rates, in percentage points."""
    return "-" if value is None else f"{float(value) * 100:+.1f} points"
