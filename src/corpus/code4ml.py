"""Loader of the Code4ML tables: competitions, scored kernels and their code blocks -> ranked instructions.

    competitions_meta.csv  comp_name, description, data_type, metric   (metric = a Code4ML metric category)
    kernels_meta.csv       kernel_id, comp_name, score
    code_blocks.csv        kernel_id, code_block_id, code_block

Ranks come from scores with the category's direction from conf/metric_categories/ (rank 1 = best; ties share
the better rank). The instruction of a kernel comes from an `InstructionExtractor` applied to the kernel's code
(its blocks in order, joined with `# %%` cell markers): the offline `StaticExtractor` (ast) here, the paper's
GPT prompt (Figure 3) through an LLM client later: anything with `extract(code) -> str` plugs in. Excluded
categories and top-k are applied BEFORE extraction, because extraction is the expensive step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from datasets import Dataset
from tqdm.auto import tqdm

from src.corpus.instruction import SECTIONS, ParseReport, parse_instruction
from src.corpus.linguacodus import rows_to_dataset
from src.corpus.metric_categories import MetricCategories, load_metric_categories
from src.errors import PipesynthError

log = logging.getLogger(__name__)

CELL_MARKER = "# %%"
TABLES: dict[str, tuple[str, ...]] = {
    "competitions": ("comp_name", "description", "data_type", "metric"),
    "kernels": ("kernel_id", "comp_name", "score"),
    "code_blocks": ("kernel_id", "code_block_id", "code_block"),
}


@runtime_checkable
class InstructionExtractor(Protocol):
    """Turns a solution's code into a three-section instruction (Data preprocessing / Model architecture /
    Model training). Implementations: `src.corpus.extract_static.StaticExtractor`; an LLM-backed one later."""

    def extract(self, code: str) -> str: ...


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """One Code4ML CSV with its required columns checked (PipesynthError names the file and the column)."""
    if not path.is_file():
        raise PipesynthError(
            f"Code4ML table '{path}' does not exist",
            "set data.source.root to the folder holding competitions_meta.csv, kernels_meta.csv and code_blocks.csv",
        )
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PipesynthError(
            f"Code4ML table '{path.name}' lacks column(s) {missing} (found: {list(frame.columns)})",
            f"{path.name} needs the columns {list(columns)}",
        )
    return frame


def rank_kernels(
    kernels: pd.DataFrame, metric_of: Mapping[str, str], categories: MetricCategories
) -> pd.Series:
    """Rank (1 = best) of each kernel within its competition, by score in the direction of the metric category."""
    sign = kernels["comp_name"].map(lambda c: -1.0 if categories[metric_of[c]].higher_is_better else 1.0)
    key = kernels["score"].astype(float) * sign  # smaller key = better in both directions
    return key.groupby(kernels["comp_name"]).rank(method="min", ascending=True).astype(int)


def kernel_code(blocks: pd.DataFrame) -> dict[str, str]:
    """Kernel id -> its code blocks in code_block_id order, as one script with `# %%` cell markers."""
    blocks = blocks.assign(kernel_id=blocks["kernel_id"].astype(str)).sort_values(
        ["kernel_id", "code_block_id"], kind="stable"
    )
    return {
        kernel: f"\n\n{CELL_MARKER}\n".join(str(c) for c in group["code_block"] if isinstance(c, str))
        for kernel, group in blocks.groupby("kernel_id", sort=False)
    }


def load_code4ml(
    root: str | Path,
    extractor: InstructionExtractor,
    metric_categories: Any = None,
    top_k: int | None = None,
    exclude_metric_categories: list[str] | None = None,
    files: Mapping[str, str] | None = None,
) -> tuple[Dataset, ParseReport]:
    """Ranked, extracted examples (columns as the Linguacodus loader) and a ParseReport of every kernel."""
    root = Path(root)
    names = {
        "competitions": "competitions_meta.csv",
        "kernels": "kernels_meta.csv",
        "code_blocks": "code_blocks.csv",
    }
    names.update(files or {})
    comps = read_table(root / names["competitions"], TABLES["competitions"])
    kernels = read_table(root / names["kernels"], TABLES["kernels"])
    blocks = read_table(root / names["code_blocks"], TABLES["code_blocks"])
    categories = load_metric_categories(metric_categories)
    categories.require(comps["metric"].dropna().unique(), f"{names['competitions']} column `metric`")
    categories.require(exclude_metric_categories or [], "data.filters.exclude_metric_categories")

    report = ParseReport(source=f"Code4ML {root}")
    comps = comps.drop_duplicates("comp_name").set_index("comp_name")
    kernels = kernels.assign(kernel_id=kernels["kernel_id"].astype(str))
    usable = pd.Series(True, index=kernels.index)
    for i, kernel in kernels.iterrows():
        reason = None
        if kernel["comp_name"] not in comps.index:
            reason = f"competition '{kernel['comp_name']}' is not in {names['competitions']}"
        elif pd.isna(kernel["score"]):
            reason = "no score"
        elif not isinstance(comps.at[kernel["comp_name"], "description"], str):
            reason = f"competition '{kernel['comp_name']}' has no description"
        elif not isinstance(comps.at[kernel["comp_name"], "metric"], str):
            reason = f"competition '{kernel['comp_name']}' has no metric category"
        if reason:
            report.add(kernel["kernel_id"], None, reason)
            usable[i] = False
    kernels = kernels[usable].copy()
    metric_of = comps["metric"].to_dict()
    kernels["rank"] = rank_kernels(kernels, metric_of, categories)
    excluded = set(exclude_metric_categories or [])
    kernels = kernels[~kernels["comp_name"].map(metric_of).isin(excluded)]
    if top_k is not None:
        kernels = (
            kernels.sort_values(["comp_name", "rank", "kernel_id"]).groupby("comp_name").head(int(top_k))
        )

    code = kernel_code(blocks)
    rows = []
    for kernel in tqdm(kernels.itertuples(index=False), total=len(kernels), desc="extract", disable=None):
        source = code.get(kernel.kernel_id, "")
        if not source.strip():
            report.add(kernel.kernel_id, None, f"no code blocks in {names['code_blocks']}")
            continue
        try:
            text = extractor.extract(source)
        except PipesynthError:
            raise  # a configuration problem (e.g. an unreachable LLM server), not a property of this kernel
        except Exception as err:  # noqa: BLE001 - one bad notebook must not stop the corpus; it is counted
            report.add(kernel.kernel_id, None, f"extractor failed: {type(err).__name__}: {err}")
            continue
        if not text or not text.strip():
            report.add(kernel.kernel_id, None, "extractor returned no instruction")
            continue
        instruction = parse_instruction(text)
        report.add(kernel.kernel_id, instruction)
        comp = comps.loc[kernel.comp_name]
        rows.append(
            {
                "kernel_id": kernel.kernel_id,
                "competition": kernel.comp_name,
                "description": comp["description"],
                "data_type": str(comp["data_type"]),
                "metric_category": comp["metric"],
                "rank": int(kernel.rank),
                "instruction": instruction.text,
                **{key: getattr(instruction, key) or "" for key in SECTIONS},
                "is_complete": instruction.is_complete,
            }
        )
    report.log(log)
    return rows_to_dataset(rows), report


class Code4MLSource:
    """`cfg.data.source` for Code4ML tables: `load() -> (Dataset, ParseReport)`."""

    def __init__(
        self,
        root: str | Path,
        extractor: InstructionExtractor,
        metric_categories: Any = None,
        top_k: int | None = None,
        exclude_metric_categories: list[str] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(extractor, InstructionExtractor):
            raise PipesynthError(
                f"data.source.extractor is a {type(extractor).__name__} without extract(code) -> str",
                "use `_target_: src.corpus.extract_static.StaticExtractor` or another extractor",
            )
        self.root = Path(root)
        self.extractor = extractor
        self.metric_categories = metric_categories
        self.top_k = top_k
        self.exclude_metric_categories = list(exclude_metric_categories or [])
        self.files = dict(files or {})

    def load(self) -> tuple[Dataset, ParseReport]:
        return load_code4ml(
            self.root,
            self.extractor,
            self.metric_categories,
            self.top_k,
            self.exclude_metric_categories,
            self.files,
        )
