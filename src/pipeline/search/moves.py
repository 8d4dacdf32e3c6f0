"""The search's moves: a draft switches the model family, an improvement edits one catalog setting group (catalog/moves.yaml), an ensemble adds the first models of other nodes' plans."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from src.pipeline.code.base import CodeResult
from src.pipeline.code.compiler import catalog
from src.pipeline.code.compiler.plan import ModelSpec, Plan, is_classification, role_params
from src.pipeline.code.compiler.text_pairs import pair_text_columns
from src.pipeline.journal import Node

log = logging.getLogger(__name__)


@dataclass
class Proposal:
    """One change to try: from `parent` (a search node), of `kind` draft | improve | debug | ensemble."""

    parent: Node
    kind: str
    move: str
    plan: Plan | None = None
    instruction: str | None = None
    code: CodeResult | None = None
    llm: dict[str, Any] | None = None


def _data_kind(plan: Plan) -> str:
    return "text" if plan.data_type == "text" else "tabular"


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return type(value)(value * factor) if isinstance(value, float) else int(round(value * factor))


def draft_families(kind: str, rows: int | None = None) -> list[str]:
    """The families drafts try, in order, for data of `kind` with `rows` labelled rows (catalog/moves.yaml
    `shapes`: the first rule whose bounds hold; `families` when none does or the rows are unknown)."""
    table = catalog.moves()
    if rows is not None:
        for rule in (table.get("shapes") or {}).get(kind) or []:
            if rule.get("max_rows") is None or rows <= int(rule["max_rows"]):
                return list(rule["families"])
    return list(table["families"][kind])


def family_moves(plan: Plan, rows: int | None = None) -> list[tuple[str, Plan]]:
    """Drafts: the plan with its (first) model switched to each other family fitting the data's kind and shape
    (`draft_families`), then the catalog's feature drafts of the data kind (another representation of the
    same data)."""
    out = []
    current = {m.family for m in plan.models}
    for family in draft_families(_data_kind(plan), rows):
        if family in current:
            continue
        role = "classifier" if is_classification(plan) else "regressor"
        if role not in catalog.model_spec(family)["roles"]:
            continue
        edited = plan.copy()
        edited.models = [ModelSpec(family=family)]
        # a distance or penalty over raw units weighs columns by their scale: such a family scales
        if catalog.model_spec(family)["needs_scaling"] and edited.preprocessing.scaling == "none":
            edited.preprocessing.scaling = "auto"
        out.append((f"model family -> {family}", edited))
    for edit in (catalog.moves().get("drafts") or {}).get(_data_kind(plan)) or []:
        edited = _edited(plan, edit)
        if edited is not None:
            out.append((f"draft: {edit['name']}", edited))
    return out


def _edited(plan: Plan, edit: dict[str, Any]) -> Plan | None:
    """`plan` with one feature edit of the catalog (toggle / set / scale a dotted Plan path); None when the
    edit changes nothing."""
    edited = plan.copy()
    changed = False
    if edit.get("toggle"):
        _set(edited, edit["toggle"], not _get(edited, edit["toggle"]))
        changed = True
    for path, value in (edit.get("set") or {}).items():
        if _get(edited, path) != value:
            _set(edited, path, copy.deepcopy(value))
            changed = True
    for path, factor in (edit.get("scale") or {}).items():
        new = _scaled(_get(edited, path), float(factor))
        if new is not None and new != _get(edited, path):
            _set(edited, path, new)
            changed = True
    return edited if changed else None


def improve_moves(plan: Plan, text_pairs: bool = False) -> list[tuple[str, Plan]]:
    """Single edits of a plan: hyperparameter groups of its first model, class weights, feature steps (those
    that `needs: text_pairs` only when `text_pairs`: the data has two columns of related text)."""
    table = catalog.moves()
    out: list[tuple[str, Plan]] = []
    model = plan.models[0]
    role = "classifier" if is_classification(plan) else "regressor"
    allowed = role_params(model.family, role)  # a move naming a parameter the family lacks is no move
    edits = list(table["params"].get(model.family) or [])
    if is_classification(plan):
        edits += table.get("classification") or []
    for edit in edits:
        edited = plan.copy()
        params = edited.models[0].params
        changed = False
        for name, value in (edit.get("set") or {}).items():
            if name in allowed and params.get(name) != value:
                params[name], changed = value, True
        for name, factor in (edit.get("scale") or {}).items():
            new = _scaled(params.get(name), float(factor)) if name in allowed else None
            if new is not None:
                params[name], changed = new, True
        if changed:
            out.append((f"{model.family}: {edit['name']}", edited))
    for edit in table["features"][_data_kind(plan)]:
        if edit.get("regression_only") and is_classification(plan):
            continue
        if edit.get("needs") == "text_pairs" and not text_pairs:
            continue
        edited = _edited(plan, edit)
        if edited is not None:
            out.append((f"features: {edit['name']}", edited))
    return out


def has_text_pairs(public_dir: Path, facts: dict[str, Any], max_categories: int, rows: int = 5000) -> bool:
    """Whether the public train has two or more columns of related text (src.pipeline.code.compiler.text_pairs,
    the detector the scripts embed), read on its first `rows` rows."""
    path = Path(public_dir) / "train.csv"
    if not path.is_file():
        return False
    frame = pd.read_csv(path, nrows=rows)
    drop = [str(facts.get("id_column")), *map(str, facts.get("targets") or [])]
    frame = frame.drop(columns=drop, errors="ignore")
    text = [  # the scripts' free-text rule (column_kinds in templates/solution.py.tmpl): three words or more
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
        and frame[c].dropna().astype(str).str.split().str.len().mean() >= 3
    ]
    return len(pair_text_columns(frame, text, max_categories)) >= 2


def ensemble_plan(base: Plan, others: list[Plan], size: int) -> Plan | None:
    """`base` with the first model of each plan in `others` added (different families), averaged in the script."""
    plan = base.copy()
    families = {m.family for m in plan.models}
    for other in others:
        if len(plan.models) >= size:
            break
        model = other.models[0]
        if model.family not in families:
            plan.models.append(ModelSpec(model.family, dict(model.params), model.requested))
            families.add(model.family)
    return plan if len(plan.models) > len(base.models) else None
