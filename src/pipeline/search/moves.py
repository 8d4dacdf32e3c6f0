"""The search's moves: a draft switches the model family, an improvement edits one catalog setting group (catalog/moves.yaml), an ensemble adds the first models of other nodes' plans."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from src.pipeline.code.base import CodeResult
from src.pipeline.code.compiler import catalog
from src.pipeline.code.compiler.plan import ModelSpec, Plan, is_classification, role_params
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


def family_moves(plan: Plan) -> list[tuple[str, Plan]]:
    """Drafts: the plan with its (first) model switched to each other family of the data kind, then the
    catalog's feature drafts of the data kind (another representation of the same data)."""
    out = []
    current = {m.family for m in plan.models}
    for family in catalog.moves()["families"][_data_kind(plan)]:
        if family in current:
            continue
        role = "classifier" if is_classification(plan) else "regressor"
        if role not in catalog.model_spec(family)["roles"]:
            continue
        edited = plan.copy()
        edited.models = [ModelSpec(family=family)]
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


def improve_moves(plan: Plan) -> list[tuple[str, Plan]]:
    """Single edits of a plan: hyperparameter groups of its first model, class weights, feature steps."""
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
        edited = _edited(plan, edit)
        if edited is not None:
            out.append((f"features: {edit['name']}", edited))
    return out


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
