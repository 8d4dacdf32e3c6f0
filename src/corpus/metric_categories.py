"""The Code4ML metric categories and their directions, read from `conf/metric_categories/<name>.yaml`.

Works from a composed config (`cfg.metric_categories`, when the primary config lists
`- metric_categories: code4ml` in its defaults) or standalone from the YAML file:

    cats = load_metric_categories(cfg.get("metric_categories"))   # None -> conf/metric_categories/code4ml.yaml
    cats["mse"].higher_is_better        # False
    cats.category_for_task_metric("roc_auc")   # "auc"
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from src.config import REPO_ROOT
from src.errors import PipesynthError

DEFAULT_PATH = REPO_ROOT / "conf" / "metric_categories" / "code4ml.yaml"
_DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class MetricCategory:
    """One category: its direction and the graded metrics it corresponds to (first = nearest)."""

    name: str
    direction: Literal["minimize", "maximize"]
    task_metric: str | None = None
    other_task_metrics: tuple[str, ...] = ()
    note: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"


class MetricCategories(Mapping[str, MetricCategory]):
    """The direction table; indexing an unknown category raises a PipesynthError that names the table file."""

    def __init__(self, categories: Mapping[str, MetricCategory], source: str = str(DEFAULT_PATH)) -> None:
        self._categories = dict(categories)
        self.source = source

    def __getitem__(self, name: str) -> MetricCategory:
        try:
            return self._categories[name]
        except KeyError:
            raise PipesynthError(
                f"unknown metric category '{name}' (known: {', '.join(self._categories)})",
                f"add it with its direction (minimize|maximize) to {self.source}, or fix the spelling",
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._categories)

    def __len__(self) -> int:
        return len(self._categories)

    def __contains__(self, name: object) -> bool:
        return name in self._categories

    def require(self, names: Any, what: str) -> None:
        """Raise one PipesynthError naming every category of `names` that the table lacks."""
        unknown = sorted({str(n) for n in names} - set(self._categories))
        if unknown:
            raise PipesynthError(
                f"unknown metric categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
                f"in {what} (known: {', '.join(self._categories)})",
                f"add {'it' if len(unknown) == 1 else 'them'} with a direction (minimize|maximize) to "
                f"{self.source}, or fix the spelling",
            )

    def category_for_task_metric(self, metric: str) -> str | None:
        """The corpus category a graded metric ("roc_auc") is written as in prompts ("auc"); None if none."""
        for cat in self._categories.values():
            if cat.task_metric == metric:
                return cat.name
        for cat in self._categories.values():
            if metric in cat.other_task_metrics:
                return cat.name
        return None


def _parse(raw: Mapping[str, Any], source: str) -> MetricCategories:
    entries = raw.get("categories", raw)
    categories: dict[str, MetricCategory] = {}
    for name, entry in entries.items():
        if not isinstance(entry, Mapping) or entry.get("direction") not in _DIRECTIONS:
            raise PipesynthError(
                f"metric category '{name}' in {source} has no valid direction (got {entry!r})",
                "give it `direction: minimize` or `direction: maximize`",
            )
        categories[str(name)] = MetricCategory(
            name=str(name),
            direction=entry["direction"],
            task_metric=entry.get("task_metric"),
            other_task_metrics=tuple(entry.get("other_task_metrics") or ()),
            note=str(entry.get("note") or ""),
        )
    if not categories:
        raise PipesynthError(
            f"the metric category table {source} is empty", "list categories with directions"
        )
    return MetricCategories(categories, source)


def load_metric_categories(
    source: DictConfig | Mapping[str, Any] | str | Path | MetricCategories | None = None,
) -> MetricCategories:
    """The table from a composed config node, a mapping, a YAML path, or (None) the default code4ml table."""
    if isinstance(source, MetricCategories):
        return source
    if source is None or isinstance(source, (str, Path)):
        path = Path(source) if source is not None else DEFAULT_PATH
        if not path.is_file():
            raise PipesynthError(
                f"metric category table '{path}' does not exist",
                f"point to an existing YAML file such as {DEFAULT_PATH}",
            )
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if not isinstance(raw, dict):
            raise PipesynthError(f"metric category table '{path}' is not a mapping", f"see {DEFAULT_PATH}")
        return _parse(raw, str(path))
    if isinstance(source, DictConfig):
        raw = OmegaConf.to_container(source, resolve=True)
        return _parse(raw, "cfg.metric_categories (conf/metric_categories/)")  # type: ignore[arg-type]
    return _parse(source, "the given metric category mapping")
