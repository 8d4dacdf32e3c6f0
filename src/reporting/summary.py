"""The summary table printed after a suite run."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt_score(score: float | None) -> str:
    return "—" if score is None else f"{score:.5g}"


def summary_table(records: list[dict[str, Any]], title: str = "") -> Table:
    """task, metric, score, position N/M, beaten %, medal, status, seconds — one row per record."""
    table = Table(title=title, title_justify="left")
    for column in ("task", "seed", "metric", "score", "position", "beaten", "medal", "status", "seconds"):
        table.add_column(
            column, justify="right" if column in ("score", "beaten", "seconds", "seed") else "left"
        )
    for record in records:
        rating = record.get("rating") or {}
        position = f"{rating['position']}/{rating['teams']}" if rating.get("position") else "—"
        beaten = (
            f"{100 * rating['beaten_fraction']:.1f}%" if rating.get("beaten_fraction") is not None else "—"
        )
        medal = rating.get("medal") or "—"
        if rating.get("flags"):
            medal += " *"
        arrow = "↑" if record.get("higher_is_better") else "↓"
        table.add_row(
            record["task"],
            str(record["seed"]),
            f"{record['metric']} {arrow}",
            _fmt_score(record.get("score")),
            position,
            beaten,
            medal,
            record["status"],
            f"{record.get('seconds', 0):.1f}",
        )
    if any((r.get("rating") or {}).get("flags") for r in records):
        table.caption = "* leaderboard flagged (rolling or leaked): position is indicative only"
    return table
