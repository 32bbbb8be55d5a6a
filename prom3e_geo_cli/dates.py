"""Dates given on the command line (YYYY-MM-DD) as a click parameter type."""

from __future__ import annotations

import datetime as dt

import click


class IsoDate(click.ParamType):  # type: ignore[type-arg]  # generic in click 8.5, not in 8.1
    """YYYY-MM-DD to a `datetime.date`; anything else is a usage error (exit 2)."""

    name = "YYYY-MM-DD"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"date {value!r} is not YYYY-MM-DD", param, ctx)


DATE = IsoDate()
