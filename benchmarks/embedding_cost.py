"""How well the search's encoding-cost estimate (src.pipeline.code.compiler.embedding_cost) predicts the encoding.

    .venv/bin/python benchmarks/embedding_cost.py                   # spooky + detecting-insults, 3,000 texts each
    .venv/bin/python benchmarks/embedding_cost.py --rows 6000

For each real text task of paths.data_dir it writes a public folder of `--rows` random rows of the raw train.csv
(four fifths train, one fifth test), asks `encoding_seconds` for its estimate, then runs the scripts' own embedding
step (templates/step_embeddings.py.tmpl, executed as a compiled script does) on every text cell in a one-thread
subprocess and times it. The named baseline is that measured encoding. Per task it prints estimate, measured
seconds and their ratio; last, `estimate_over_measured=<median ratio>` (1.0 is exact; above 1 the gate skips
embeddings it could have afforded, below 1 it lets a search overrun its budget).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from src.pipeline.code.compiler.embedding_cost import TEMPLATE, encoding_seconds, text_cells  # noqa: E402

TASKS = ["spooky-author-identification", "detecting-insults-in-social-commentary"]
# runs the template's step as a script does: its names (np, os, time, stage, ENCODING_CPU) come from the preamble
_ENCODE = """
import json, os, sys, time
import numpy as np
ENCODING_CPU = [0.0]
def stage(name):
    pass
exec(open(sys.argv[1]).read())
sentence_embeddings(json.load(sys.stdin))
print(ENCODING_CPU[0])
"""


def _public(raw: Path, id_column: str | None, rows: int, folder: Path) -> Path:
    frame = pd.read_csv(raw / "train.csv").sample(rows, random_state=0).reset_index(drop=True)
    if id_column is None:
        id_column = "id"
        frame.insert(0, id_column, range(len(frame)))
    cut = rows * 4 // 5
    folder.mkdir(parents=True)
    frame.iloc[:cut].to_csv(folder / "train.csv", index=False)
    frame.iloc[cut:].to_csv(folder / "test.csv", index=False)
    return folder


def _measured(cells: list[str], where: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _ENCODE, str(TEMPLATE)],
        input=json.dumps(cells),
        capture_output=True,
        text=True,
        env=env,
        cwd=where,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows of each task's train.csv to encode")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "kaggle"))
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for slug in TASKS:
            raw = Path(args.data_dir) / slug / "raw"
            if not (raw / "train.csv").is_file():
                print(f"{slug}: no {raw / 'train.csv'}: skipped")
                continue
            id_column = json.loads((raw.parent / "task.json").read_text())["id_column"]
            public = _public(raw, id_column, args.rows, Path(tmp) / slug)
            facts = {"id_column": id_column or "id", "targets": []}
            estimate = encoding_seconds(public, facts)
            if estimate is None:
                print(f"{slug}: no estimate (the encoder could not be timed)")
                continue
            cells = text_cells(public, facts)
            measured = _measured(cells, public)
            ratios.append(estimate / measured)
            print(
                f"{slug:<42} {len(cells)} texts  estimate {estimate:.1f} s  measured {measured:.1f} s "
                f"({len(cells) / measured:.0f} texts/s)  ratio {ratios[-1]:.2f}"
            )
    if not ratios:
        sys.exit("no text task could be measured: is paths.data_dir right (--data-dir)?")
    print(f"estimate_over_measured={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
