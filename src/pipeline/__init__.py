"""The method's stages, one package each, composed by `generate.Pipeline`:

    instruct/  k ranked instructions (prompt, guided sampling, retrieval, family vote)   conf/prompt, retrieval, decide
    refine/    none | multi_role (researcher -> resolver) | execution                     conf/refine/
    code/      one coder interface: compiler | llm (block by block); the repair loop      conf/coder/
    search/    AIDE-style policy, moves, blends, out-of-fold runner                         conf/search/

Shared by every stage: `journal` (the nodes each stage records) and `validation` (the inner validation folds that
mirror the task's split; the repair loop, execution refinement and the search all score on them).
Lower stages never import higher ones (tests/test_layering.py).
"""
