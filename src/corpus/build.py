"""`build_corpus(cfg) -> DatasetDict(train, validation)`: source -> prompt pairs -> filters -> split -> limit.

`cfg` is a composed train config: `cfg.data` (conf/data/*.yaml: source, contamination, filters, split, limit), `cfg.prompt`
(conf/prompt/*.yaml), `cfg.paths` (corpus_path), and optionally `cfg.metric_categories` (else the default
conf/metric_categories/code4ml.yaml). Columns: competition, kernel_id, description, data_type,
metric_category, rank, instruction, prompt, completion.

    dd = build_corpus(cfg)                       # figure4 / linguacodus_release templates
    dd = build_corpus(cfg, tokenizer=tok)        # chat template, or data.filters.max_prompt_tokens
    built = build_corpus_with_report(cfg); built.stats()   # parse counts and filter steps, for logging

Contamination: the competitions of `data.contamination.exclude_suites` (default [dev, paper]) and
`exclude_tasks` are removed before any filter (src/corpus/contamination.py); `exclude_suites=[]` opts out.
What was removed is in `built.exclusion`, in `stats()` and, in a Hydra run, in `<run dir>/corpus_exclusion.json`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from src.corpus.contamination import Exclusion, exclusion_from_config
from src.corpus.filters import FilterStep, apply_filters
from src.corpus.instruction import ParseReport
from src.corpus.metric_categories import load_metric_categories
from src.corpus.prompts import build_template
from src.corpus.split import split_by_competition, subsample
from src.errors import PipesynthError

log = logging.getLogger(__name__)

COLUMNS = (
    "competition",
    "kernel_id",
    "description",
    "data_type",
    "metric_category",
    "rank",
    "instruction",
    "prompt",
    "completion",
)


@dataclass
class CorpusBuild:
    """The built splits plus how they came about (parse report, filter steps)."""

    dataset: DatasetDict
    report: ParseReport
    steps: list[FilterStep]
    exclusion: Exclusion = field(default_factory=Exclusion)

    def stats(self) -> dict[str, Any]:
        """Flat numbers for a run log: parse counts, rows after each filter, split sizes and competitions."""
        out: dict[str, Any] = {
            f"corpus/parse_{k}": v for k, v in self.report.as_dict().items() if k != "reasons"
        }
        out.update({f"corpus/after_{s.name}": s.after for s in self.steps})
        out["corpus/contamination_rows_removed"] = sum(self.exclusion.report.values())
        out.update({f"corpus/contamination/{k}": v for k, v in self.exclusion.report.items() if v})
        for split, ds in self.dataset.items():
            out[f"corpus/{split}_examples"] = len(ds)
            out[f"corpus/{split}_competitions"] = len(set(ds["competition"]))
        return out


def _instantiate(node: Any, what: str) -> Any:
    try:
        return instantiate(node)
    except MissingMandatoryValue as err:
        raise PipesynthError(
            f"{what} has a required value that is not set ({err})", "set it on the command line"
        ) from None
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, PipesynthError):
            raise cause from None
        raise PipesynthError(
            f"cannot build {what}: {err}", f"check the `_target_` and keys of {what}"
        ) from None


def build_corpus_with_report(cfg: DictConfig, tokenizer: Any = None) -> CorpusBuild:
    """Everything `build_corpus` does, also returning the ParseReport and the FilterSteps."""
    data = cfg.data
    categories = load_metric_categories(OmegaConf.select(cfg, "metric_categories"))
    source = _instantiate(data.source, "cfg.data.source")
    if not callable(getattr(source, "load", None)):
        raise PipesynthError(
            f"cfg.data.source built a {type(source).__name__} without load()",
            "use src.corpus.linguacodus.LinguacodusSource or src.corpus.code4ml.Code4MLSource",
        )
    ds, report = source.load()
    categories.require(set(ds["metric_category"]), f"the corpus rows ({report.source})")
    exclusion, contamination_step = _exclude_evaluated(ds, data.get("contamination"), cfg)
    if contamination_step is not None:
        kept = [i for i, keep in enumerate(exclusion.keep_mask(ds["competition"])) if keep]
        ds = Dataset.from_dict(ds[kept], features=ds.features)  # a fresh table: no index mapping to flatten

    template = build_template(cfg.prompt, tokenizer)
    pairs = [template.render_pair(row) for row in ds]
    ds = ds.add_column("prompt", [p["prompt"] for p in pairs]).add_column(
        "completion", [p["completion"] for p in pairs]
    )

    count_tokens = (lambda text: template.count_tokens(tokenizer, text)) if tokenizer is not None else None
    ds, steps = apply_filters(ds, data.filters, categories, count_tokens)
    if contamination_step is not None:
        steps.insert(0, contamination_step)
    splits = split_by_competition(ds, float(data.split.validation_fraction), int(data.split.seed))
    limit = data.get("limit") or {}
    splits = DatasetDict(
        {
            name: subsample(split, limit.get(name), int(data.split.seed)).select_columns(list(COLUMNS))
            for name, split in splits.items()
        }
    )
    log.info(
        "corpus: %d train examples (%d competitions), %d validation examples (%d competitions), prompt=%s",
        len(splits["train"]),
        len(set(splits["train"]["competition"])),
        len(splits["validation"]),
        len(set(splits["validation"]["competition"])),
        template.name,
    )
    return CorpusBuild(splits, report, steps, exclusion)


def _exclude_evaluated(ds: Any, contamination: Any, cfg: DictConfig) -> tuple[Exclusion, FilterStep | None]:
    """The exclusion of `data.contamination` over the loaded rows, and its FilterStep (None when opted out)."""
    if contamination is None:
        raise PipesynthError(
            "cfg.data has no `contamination` block",
            "add `contamination: {exclude_suites: [dev, paper], exclude_tasks: []}` to the data config "
            "(exclude_suites: [] opts out explicitly)",
        )
    frame = ds.select_columns(["competition", "description"]).to_pandas()
    data_dir = contamination.get("data_dir") or OmegaConf.select(cfg, "paths.data_dir")
    exclusion = exclusion_from_config(contamination, frame, str(data_dir))
    if exclusion is None:
        log.warning("corpus: contamination exclusion is OFF (data.contamination.exclude_suites=[])")
        return Exclusion(), None
    removed = sum(exclusion.report.values())
    log.info(
        "corpus: contamination exclusion %s removed %d rows: %s",
        exclusion.suites,
        removed,
        {k: v for k, v in exclusion.report.items() if v},
    )
    return exclusion, FilterStep("contamination", len(ds), len(ds) - removed, ",".join(exclusion.suites))


def _record_exclusion(cfg: DictConfig, exclusion: Exclusion) -> None:
    """Write what was excluded into the Hydra run folder (nothing outside a Hydra run)."""
    out = OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=False)
    if not out:
        return
    path = Path(str(out)) / "corpus_exclusion.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(exclusion.as_dict(), indent=2))


def build_corpus(cfg: DictConfig, tokenizer: Any = None) -> DatasetDict:
    """Train/validation prompt-completion pairs from the configured source, filters, template and split."""
    built = build_corpus_with_report(cfg, tokenizer)
    _record_exclusion(cfg, built.exclusion)
    return built.dataset
