"""Builders of the paper's tables (Markdown + LaTeX) and figures (PNG) from run records, never typed in.

Table 1 (suite results beside the paper's), Table 2 (fine-tuning hyperparameters of a training run's resolved
config beside the paper's), Figure 2 (most popular model family per data type x metric in the corpus, beside the
paper's) and the ablation (each variant's score per task and overall, mean ± std over seeds).
Outputs are byte-stable for the same inputs (sorted rows, PNGs without timestamps), so `paper/` cannot drift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MEDALS = ("gold", "silver", "bronze")
PNG_METADATA = {"Software": None}  # no matplotlib version in the file: identical bytes on regeneration


def _rating_field(record: Mapping[str, Any], rating: Mapping[str, Any], key: str) -> Any:
    """A field of interfaces D: on the record or inside its rating (either is accepted)."""
    value = record.get(key)
    return rating.get(key) if value is None else value


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record with the rating flattened; sorted by (solution, task, seed)."""
    rows = []
    for r in records:
        rating = r.get("rating") or {}
        rows.append(
            {
                "task": r["task"],
                "solution": r["solution"],
                "seed": int(r["seed"]),
                "metric": r["metric"],
                "higher_is_better": r.get("higher_is_better"),
                "status": r["status"],
                "score": r.get("score"),
                "validation_score": r.get("validation_score"),
                "position": rating.get("position"),
                "position_low": _rating_field(r, rating, "position_low"),
                "position_high": _rating_field(r, rating, "position_high"),
                "teams": rating.get("teams"),
                "beaten_fraction": rating.get("beaten_fraction"),
                "medal": rating.get("medal"),
                "flagged": bool(rating.get("flags")),
                "seconds": r.get("seconds"),
            }
        )
    frame = pd.DataFrame(rows, columns=[
        "task", "solution", "seed", "metric", "higher_is_better", "status", "score", "validation_score",
        "position", "position_low", "position_high", "teams", "beaten_fraction", "medal", "flagged", "seconds",
    ])  # fmt: skip
    for column in ("score", "validation_score", "beaten_fraction", "seconds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values(["solution", "task", "seed"], kind="stable").reset_index(drop=True)


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.{digits}g}"


def mean_std(values: pd.Series, digits: int = 4) -> str:
    """`mean ± std` (sample std over seeds; the mean alone for one value; — for none)."""
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return _num(float(values.iloc[0]), digits)
    return f"{_num(float(values.mean()), digits)} ± {_num(float(values.std(ddof=1)), 2)}"


def _position(rated: pd.DataFrame) -> str:
    """`N/M [low–high]` of the median seed (the interval only when the record carries one)."""
    if rated.empty:
        return "—"
    median = rated.iloc[(rated["position"] - rated["position"].median()).abs().argsort().iloc[0]]
    text = f"{int(median['position'])}/{int(median['teams'])}"
    if not pd.isna(median["position_low"]) and not pd.isna(median["position_high"]):
        text += f" [{int(median['position_low'])}–{int(median['position_high'])}]"
    return text + (" *" if rated["flagged"].any() else "")


def table1(frame: pd.DataFrame, paper: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The paper's Table 1 layout per (task, solution): metric, score, position N/M [interval], beaten %, medal,
    valid runs; the paper's published score and rating beside it for the competitions it reports."""
    rows = []
    for (task, solution), group in frame.groupby(["task", "solution"], sort=True):
        scored = group.dropna(subset=["score"])
        rated = scored.dropna(subset=["position"])
        medals = [m for m in rated["medal"] if m in MEDALS]
        ref = paper.get(task, {})
        arrow = "↑" if bool(group["higher_is_better"].iloc[0]) else "↓"
        rows.append(
            {
                "competition": ref.get("title", task),
                "solution": solution,
                "metric": f"{group['metric'].iloc[0]} {arrow}",
                "score": mean_std(scored["score"]),
                "position": _position(rated),
                "beaten": "—" if rated.empty else f"{100 * rated['beaten_fraction'].mean():.1f}%",
                "medal": ", ".join(sorted(set(medals))) if medals else "—",
                "valid": f"{len(scored)}/{len(group)}",
                "paper metric": ref.get("metric", "—"),
                "paper score": _num(ref.get("score")),
                "paper rating": f"{ref['position']}/{ref['teams']}" if ref else "—",
            }
        )
    return pd.DataFrame(rows)


def ablation(frame: pd.DataFrame) -> pd.DataFrame:
    """Each variant (solution) per row: score mean ± std over seeds per task, and overall: % of leaderboard
    beaten (mean over tasks per seed, then mean ± std over seeds), valid runs, medals, seconds."""
    tasks = sorted(frame["task"].unique())
    arrows = {
        t: "↑" if bool(frame.loc[frame["task"] == t, "higher_is_better"].iloc[0]) else "↓" for t in tasks
    }
    out = []
    for solution, group in frame.groupby("solution", sort=True):
        row: dict[str, Any] = {"variant": solution}
        for task in tasks:
            row[f"{task} ({frame.loc[frame['task'] == task, 'metric'].iloc[0]} {arrows[task]})"] = mean_std(
                group.loc[group["task"] == task, "score"]
            )
        per_seed = group.dropna(subset=["beaten_fraction"]).groupby("seed")["beaten_fraction"].mean()
        row["overall beaten %"] = mean_std(100 * per_seed, 3)
        row["valid"] = f"{int(group['score'].notna().sum())}/{len(group)}"
        row["medals"] = int(group["medal"].isin(MEDALS).sum())
        row["mean seconds"] = _num(group["seconds"].mean(), 3)
        out.append(row)
    return pd.DataFrame(out)


def table2(train_cfg: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> pd.DataFrame:
    """The fine-tuning hyperparameters: the paper's value beside the value in a training run's resolved config
    (`spec.rows`: group, parameter, key (dotted path in the config), paper)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(dict(train_cfg or {}))
    rows = []
    for item in spec["rows"]:
        ours = OmegaConf.select(cfg, item["key"], default=None) if item.get("key") else None
        if isinstance(ours, str) and ours.count(".") > 1:  # a _target_: its last name is the readable part
            ours = ours.rsplit(".", 1)[-1]
        if OmegaConf.is_config(ours):
            ours = OmegaConf.to_container(ours)
        rows.append(
            {
                "group": item["group"],
                "parameter": item["parameter"],
                "paper": _show(item.get("paper")),
                "this run": _show(ours),
                "config key": item.get("key") or "—",
            }
        )
    return pd.DataFrame(rows)


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def figure2_table(family_cells: pd.DataFrame, published: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """Figure 2 as a table: per data type x metric category with any instruction, our majority family
    (count / instructions naming a family) beside the paper's cell where it printed one."""
    rows = []
    for cell in family_cells.itertuples(index=False):
        paper = (published.get(str(cell.data_type)) or {}).get(str(cell.metric_category))
        rows.append(
            {
                "data type": cell.data_type,
                "metric": cell.metric_category,
                "family": cell.family if isinstance(cell.family, str) else "—",
                "share": f"{cell.count}/{cell.named}" if cell.named else "—",
                "competitions": int(cell.competitions),
                "paper": paper or "—",
            }
        )
    return pd.DataFrame(rows)


def figure2_heatmap(family_cells: pd.DataFrame, path: Path, title: str) -> Path:
    """Heatmap of data type x metric: colour = share of the majority family, text = the family."""
    plt = _pyplot()
    cells = family_cells[family_cells["named"] > 0]
    types = sorted(cells["data_type"].unique())
    metrics = sorted(cells["metric_category"].unique())
    share = np.full((len(types), len(metrics)), np.nan)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(metrics) + 2), max(3, 0.55 * len(types) + 1.5)))
    for cell in cells.itertuples(index=False):
        i, j = types.index(cell.data_type), metrics.index(cell.metric_category)
        share[i, j] = cell.share
        ax.text(j, i, f"{cell.family}\n{cell.count}/{cell.named}", ha="center", va="center", fontsize=6,
                color="white" if cell.share > 0.6 else "black")  # fmt: skip
    image = ax.imshow(share, cmap="YlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(metrics)), metrics, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(types)), types, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="share of instructions naming a family")
    return _save(fig, path)


def beaten_figure(frame: pd.DataFrame, path: Path) -> Path:
    """Bars of the % of leaderboard teams beaten, per task and solution (mean over seeds)."""
    plt = _pyplot()
    data: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, solution), group in frame.dropna(subset=["beaten_fraction"]).groupby(["task", "solution"]):
        data[solution][task] = 100 * group["beaten_fraction"].mean()
    tasks = sorted({t for per_task in data.values() for t in per_task})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks)), 4))
    width = 0.8 / max(1, len(data))
    for i, (solution, per_task) in enumerate(sorted(data.items())):
        ax.bar([j + i * width for j in range(len(tasks))], [per_task.get(t, 0) for t in tasks], width,
               label=solution)  # fmt: skip
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("% of leaderboard teams beaten")
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    if data:
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_table(table: pd.DataFrame, path_stem: Path, caption: str) -> list[Path]:
    """Markdown and LaTeX versions of one table."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    md = path_stem.with_suffix(".md")
    tex = path_stem.with_suffix(".tex")
    shown = table.astype(object).where(table.notna(), "—")
    md.write_text(
        f"<!-- generated by `python -m src.tables`; do not edit -->\n\n{caption}\n\n"
        f"{shown.to_markdown(index=False)}\n"
    )
    tex.write_text(shown.to_latex(index=False, caption=caption, float_format="%.4g"))
    return [md, tex]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    _pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- the ablation's axes (issue 27)

ARM_AXES = (
    "refine",
    "search",
    "instructions",
)  # an arm's solution name: <refine>/<search>/<instructions>[-k1]
REFERENCE = {
    "refine": "none",
    "search": "none",
    "instructions": "nonsense",
    "k": "k1",
}  # k: do 3 options help


def arm_of(solution: str) -> dict[str, str] | None:
    """The axes of an ablation arm's name (`multi_role/none/adapter`, `none/none/adapter-k1`); None otherwise."""
    parts = str(solution).split("/")
    if len(parts) != len(ARM_AXES):
        return None
    arm = dict(zip(ARM_AXES, parts, strict=True))
    instructions, _, k = arm["instructions"].partition("-")
    arm["instructions"], arm["k"] = instructions, k or "k3"
    return arm


def arm_checks(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per arm, what its records say ran: instructions written by the model / retrieved / fallbacks, the LLM,
    refinements and their fallbacks, search nodes — an arm that fell back measured nothing."""
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        if arm_of(r["solution"]) is None:
            continue
        meta = r.get("solution_meta") or {}
        made = meta.get("instructions") or {}
        refine = meta.get("refine") or {}
        row = rows.setdefault(
            r["solution"],
            {"arm": r["solution"], "records": 0, "graded": 0, "model": 0, "retrieved": 0, "instr. fallbacks": 0,
             "refinements": 0, "refine fallbacks": 0, "llm": set()},
        )  # fmt: skip
        row["records"] += 1
        row["graded"] += int(r.get("score") is not None)
        row["model"] += int(made.get("model") or 0)
        row["retrieved"] += int(made.get("retrieved") or 0)
        row["instr. fallbacks"] += int(made.get("fallbacks") or 0)
        row["refinements"] += int(refine.get("refinements") or 0)
        row["refine fallbacks"] += int(refine.get("fallbacks") or 0)
        if made.get("llm"):
            row["llm"].add(str(made["llm"]))
    out = [{**row, "llm": ", ".join(sorted(row["llm"])) or "—"} for _, row in sorted(rows.items())]
    return pd.DataFrame(out)


def ablation_effects(records: list[dict[str, Any]], confidence: float = 0.95) -> pd.DataFrame:
    """Each axis's effect in points of teams beaten: every level against the axis's reference level (REFERENCE)
    over the records that match on task, seed and every other axis. Each pair subtracts the two records'
    `beaten_samples` resample by resample (the same test rows, src.evaluate), the mean over pairs is taken per
    resample, and the interval is that distribution's central `confidence` share: the test rows' noise, paired."""
    cells: dict[tuple[Any, ...], np.ndarray] = {}
    for r in records:
        arm = arm_of(r["solution"])
        if arm is None or not r.get("beaten_samples"):
            continue
        cells[(r["task"], int(r["seed"]), *(arm[a] for a in (*ARM_AXES, "k")))] = np.asarray(
            r["beaten_samples"], dtype=float
        )
    axes = (*ARM_AXES, "k")
    rows = []
    for i, axis in enumerate(axes):
        levels = sorted({key[2 + i] for key in cells})
        reference = REFERENCE[axis]
        for level in levels:
            if level == reference:
                continue
            diffs = []
            for key, samples in cells.items():
                if key[2 + i] != level:
                    continue
                ref = cells.get((*key[: 2 + i], reference, *key[3 + i :]))
                if ref is not None and len(ref) == len(samples):
                    diffs.append(samples - ref)
            if not diffs:
                continue
            mean = np.mean(np.stack(diffs), axis=0)
            tail = 100 * (1 - confidence) / 2
            low, high = np.percentile(mean, [tail, 100 - tail])
            rows.append(
                {
                    "axis": axis,
                    "level": level,
                    "against": reference,
                    "pairs": len(diffs),
                    "effect (points)": _num(float(mean.mean()), 3),
                    f"{int(100 * confidence)}% interval": f"[{low:+.1f}, {high:+.1f}]",
                    "effect": "yes" if low > 0 or high < 0 else "not shown",
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "axis",
            "level",
            "against",
            "pairs",
            "effect (points)",
            f"{int(100 * confidence)}% interval",
            "effect",
        ],
    )
