"""User-facing errors: one clear message that names the problem and the fix."""

from __future__ import annotations


class PipesynthError(Exception):
    """An error the user can act on. Entry points print its message (no traceback) and exit with code 2."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}" if fix else problem)
