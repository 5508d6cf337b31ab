"""Search spaces in one neutral form, rendered for grid, random (scipy distributions) and Optuna."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

GRID_POINTS = 3  # a numeric range contributes this many points to a grid


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


Param = Union[Choice, IntRange, FloatRange]
Space = dict[str, Param]


def grid_values(param: Param) -> list[Any]:
    if isinstance(param, Choice):
        return list(param.values)
    space = np.geomspace if param.log else np.linspace
    points = space(param.low, param.high, GRID_POINTS)
    if isinstance(param, IntRange):
        return sorted({int(round(p)) for p in points})
    return [float(p) for p in points]


def distribution(param: Param) -> Any:
    from scipy import stats

    if isinstance(param, Choice):
        return list(param.values)
    if isinstance(param, IntRange):
        return stats.randint(param.low, param.high + 1)
    return stats.loguniform(param.low, param.high) if param.log else stats.uniform(param.low, param.high - param.low)


def suggest(trial: Any, name: str, param: Param) -> Any:
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, list(param.values))
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log)


def prefixed(space: Space, prefix: str) -> Space:
    return {f"{prefix}{k}": v for k, v in space.items()}
