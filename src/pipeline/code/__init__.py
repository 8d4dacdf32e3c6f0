"""Stage 3, code: one instruction -> one solution script, behind one coder interface, and the repair loop.

Takes an instruction text and the public task facts; returns a `CodeResult` (the script, its plan when there is
one, what was substituted). Config group: conf/coder/ (compiler | llm), instantiated by `_target_`.

- base: the `Coder` protocol, `CodeResult`, the sandbox contract (`cv_score=` line).
- compiler/: the offline compiler (instruction -> Plan -> script from templates and a catalog), its plan repair.
- llm: the paper's block-by-block LLM coder (preprocessing -> model -> training -> submission -> integration).
- repair: runners (validation folds, full public files) and `run_with_repair`, the loop every stage runs code in.
"""
