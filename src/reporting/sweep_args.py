"""Run a Hydra entry point with a W&B sweep agent's arguments, translating the names W&B cannot hold.

W&B sweep parameter names must match `[A-Za-z_][A-Za-z0-9_.-]*`, so a nested config-group override such as
`refine@solution.refine=none` is named `refine__solution.refine` in a sweep file; this turns `__` back into
`@` and runs the module with the result (fixed arguments such as `+experiment=...` sit in the `command`).

    command: [${env}, ${interpreter}, -m, src.reporting.sweep_args, src.evaluate, solution=generate, ${args_no_hyphens}]
"""

from __future__ import annotations

import os
import sys


def hydra_args(args: list[str]) -> list[str]:
    """`group__package=value` -> `group@package=value`; everything else unchanged."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        out.append(f"{key.replace('__', '@', 1)}{sep}{value}" if sep and "__" in key else arg)
    return out


def main(argv: list[str]) -> None:
    if not argv or not argv[0].startswith("src."):
        sys.exit("usage: python -m src.reporting.sweep_args src.<entry point> [key=value ...]")
    os.execv(sys.executable, [sys.executable, "-m", argv[0], *hydra_args(argv[1:])])


if __name__ == "__main__":
    main(sys.argv[1:])
