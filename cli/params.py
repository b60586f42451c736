"""Click parameter types shared by several commands."""

from __future__ import annotations

import math

import click


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinities: ``nan`` passes every range
    comparison (all are false) and ``inf`` passes an open upper bound, and either would reach a
    deadline computation (``select``) and fail there, after the decision began."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)
