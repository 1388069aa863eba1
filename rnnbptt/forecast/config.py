"""A forecaster's settings, checked once, up front, and recorded in its model file."""

from __future__ import annotations

import dataclasses

from .._checks import check_backward
from .._scalars import finite_number, int_seed, positive_int
from ..models import KINDS
from .quantiles import quantile_levels

FN = "Forecaster"
SIZES = ("h", "input_size", "n_models", "step_size", "head_size", "epochs")
SIZES += ("steps_per_epoch", "batch_size", "patience")


@dataclasses.dataclass(frozen=True)
class ForecastConfig:
    """What a :class:`~rnnbptt.forecast.Forecaster` is made of (see its docstring
    for the meaning of each field)."""

    h: int
    input_size: int
    cell: str = "lstm"
    hidden_sizes: tuple[int, ...] = (64,)
    levels: tuple[float, ...] = (80, 95)
    n_models: int = 1
    level_steps: int | None = None
    val_size: int | None = None
    step_size: int = 1
    season_length: int | None = None
    futr_exog: tuple[str, ...] = ()
    hist_exog: tuple[str, ...] = ()
    calendar: bool = True
    head_size: int = 128
    epochs: int = 100
    steps_per_epoch: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    clip_norm: float | None = 1.0
    patience: int = 10
    truncate: int | None = None
    backward: str = "manual"
    seed: int = 0

    def __post_init__(self):
        for name in SIZES:
            self._set(name, positive_int(FN, name, getattr(self, name)))
        for name in ("level_steps", "val_size", "season_length", "truncate"):
            if getattr(self, name) is not None:
                self._set(name, positive_int(FN, name, getattr(self, name)))
        if self.cell not in KINDS:
            raise ValueError(
                f"`{FN}`: `cell` must be one of {sorted(KINDS)}, got {self.cell!r}"
            )
        check_backward(FN, self.backward)
        self._set("seed", int_seed(FN, "seed", self.seed))
        self._check_sizes()
        self._check_names()
        quantile_levels(self.levels)  # refuses bad levels
        self._set("levels", tuple(float(v) for v in self.levels))
        rate = finite_number(FN, "learning_rate", self.learning_rate, above=0.0)
        self._set("learning_rate", rate)
        if self.clip_norm is not None:
            self._set(
                "clip_norm", finite_number(FN, "clip_norm", self.clip_norm, above=0.0)
            )
        if not isinstance(self.calendar, bool):
            raise TypeError(f"`{FN}`: `calendar` must be True or False")

    def _set(self, name, value) -> None:
        object.__setattr__(self, name, value)

    def _check_sizes(self) -> None:
        sizes = self.hidden_sizes
        if isinstance(sizes, int) or not hasattr(sizes, "__iter__") or not sizes:
            raise TypeError(
                f"`{FN}`: `hidden_sizes` must be a non-empty list of ints, one per "
                f"layer (e.g. [64]), got {sizes!r}"
            )
        self._set(
            "hidden_sizes", tuple(positive_int(FN, "hidden_sizes", s) for s in sizes)
        )
        if self.input_size % self.step_size:
            raise ValueError(
                f"`{FN}`: `input_size` ({self.input_size}) must be a multiple of "
                f"`step_size` ({self.step_size})"
            )
        if self.val_size is not None and self.val_size < self.h:
            raise ValueError(
                f"`{FN}`: `val_size` ({self.val_size}) must be at least `h` "
                f"({self.h}): the held-out steps hold whole forecasts"
            )
        if self.level_steps is not None and self.level_steps > self.input_size:
            raise ValueError(
                f"`{FN}`: `level_steps` ({self.level_steps}) must be at most "
                f"`input_size` ({self.input_size})"
            )

    def _check_names(self) -> None:
        for name in ("futr_exog", "hist_exog"):
            names = getattr(self, name)
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(
                    f"`{FN}`: `{name}` must be a list of column names, got {names!r}"
                )
            self._set(name, tuple(names))
        both = set(self.futr_exog) & set(self.hist_exog)
        if both:
            raise ValueError(
                f"`{FN}`: columns {sorted(both)} are in both `futr_exog` and "
                "`hist_exog`"
            )
        reserved = {"unique_id", "ds", "y"} & {*self.futr_exog, *self.hist_exog}
        if reserved:
            raise ValueError(f"`{FN}`: {sorted(reserved)} cannot be covariates")

    @property
    def held_out(self) -> int:
        """The last steps of each series kept from training, to validate on."""
        return self.h if self.val_size is None else self.val_size

    def season(self, freq) -> int:
        """The season length: given, else the frequency's usual one."""
        from .features import season_length

        return self.season_length or season_length(freq)

    def levelled(self, season: int) -> int:
        """The inputs whose mean is a window's level: given, else one season
        (when it fits in the window), else the last value."""
        if self.level_steps is not None:
            return self.level_steps
        return season if 1 < season <= self.input_size else 1
