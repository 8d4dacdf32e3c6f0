"""Stage 2, refine. Refinement: from k ranked instructions to the one the code is made from (`conf/refine/`, the paper's ablation).

- `NoRefine` (`refine=none`): the raw fine-tuned model's rank-1 instruction.
- `MultiRoleRefine` (`refine=multi_role`): the paper's Smart-GPT (Section 4.2, Figure 6). A researcher role
  lists the flaws and faulty logic of the k options; a resolver role, seeing the researcher's answer, picks the
  best option and rewrites it in full. Prompts are data (conf/refine/multi_role.yaml). A resolver answer without
  the core sections falls back to the option it named (else rank 1), marked in the journal.
- `ExecutionRefine` (`refine=execution`, beyond the paper, which found Smart-GPT inconsistent): every option
  becomes a script (the configured coder), runs in the sandbox on a validation split carved from the PUBLIC
  train (`src.pipeline.validation`), failed runs are repaired, and the best validation score under the metric's
  direction wins (ties: the better rank). Private answers are never touched.

Each refiner's `refine(ctx)` returns a `Refined`: the chosen instruction text and journal node, and for
execution refinement the already validated script.

Takes a `RefineContext` (the k candidates, the task facts, the LLM client, the coder and the sandbox); returns a
`Refined`. Config group: conf/refine/ (none | multi_role | execution), instantiated by `_target_`.
"""

from src.pipeline.refine.base import NoRefine, RefineContext, Refined
from src.pipeline.refine.execution import ExecutionRefine
from src.pipeline.refine.multi_role import MultiRoleRefine, mentioned_option

__all__ = ["ExecutionRefine", "MultiRoleRefine", "NoRefine", "RefineContext", "Refined", "mentioned_option"]
