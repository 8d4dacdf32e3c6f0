"""Stage 4, search: past the refined solution, an AIDE-style improvement loop scored on inner validation only.

Takes a `RefineContext` and the `Refined` solution; returns a `Refined` whose script is the best node (or the
input untouched with `search=none`). Config group: conf/search/ (none | greedy | tree), instantiated by `_target_`.

- policy: `Search`, the loop (draft, debug, improve, ensemble, blend) and its budget.
- moves: the plan edits a node may try (catalog/moves.yaml).
- runner: `OofRunner`, a node run on the full public files, graded on its out-of-fold predictions.
- members, blend, blend_outputs: which nodes a blend combines, its weights or stack, and its one script.
"""

from src.pipeline.search.members import blend_candidates, same_rows_as_best
from src.pipeline.search.moves import ensemble_plan, family_moves, improve_moves
from src.pipeline.search.policy import Search, SearchState, load_journal_search
from src.pipeline.search.runner import DERIVED_CACHES, OOF_FILE, OofRunner

__all__ = [
    "DERIVED_CACHES",
    "OOF_FILE",
    "OofRunner",
    "Search",
    "SearchState",
    "blend_candidates",
    "ensemble_plan",
    "family_moves",
    "improve_moves",
    "load_journal_search",
    "same_rows_as_best",
]
