"""Solution providers: how the runner obtains a solution script for a prepared task.

`conf/solution/*.yaml` picks one by `_target_`: a fixed file (`baseline_constant`, or any `solution=<path.py>`),
the compiler's fixed GBDT pipeline (`baseline_gbdt`), or the full generation pipeline (`generate`).
"""

from src.solutions.providers import CompilerBaseline, ScriptFile, SolutionBuild, SolutionProvider

__all__ = ["CompilerBaseline", "ScriptFile", "SolutionBuild", "SolutionProvider"]
