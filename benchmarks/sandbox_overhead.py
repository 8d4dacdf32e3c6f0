"""Sandbox overhead: the same solution run bare (a plain subprocess, same python and environment) and in the
sandbox, interleaved, N repetitions each. The last line is `sandbox_overhead_ratio=<median sandbox / median bare>`
(goal <= 1.10).

    python benchmarks/sandbox_overhead.py                      # generated tabular task, 7 repetitions
    python benchmarks/sandbox_overhead.py --reps 5 --rows 40000
    python benchmarks/sandbox_overhead.py --task titanic       # a real prepared task from paths.data_dir

The solution is a realistic small pipeline: pandas feature engineering, a scikit-learn ColumnTransformer +
HistGradientBoosting model with 3-fold cross-validation, then a fit on all rows and a submission. "sandbox"
times the whole `Sandbox.run` (work-folder copy, jail setup, supervision, log handling) against the bare
`subprocess.run` of the same script in an already prepared folder, so the ratio is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from src.sandbox import Sandbox  # noqa: E402

SOLUTION = """
import json
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

task = json.load(open("input/task.json"))
train = pd.read_csv("input/train.csv")
test = pd.read_csv("input/test.csv")
sample = pd.read_csv("input/sample_submission.csv")
id_col, target = task["id_column"], task["targets"][0]
features = [c for c in test.columns if c != id_col]
for frame in (train, test):  # a little feature engineering, as generated pipelines do
    numeric = frame[features].select_dtypes("number")
    frame["row_mean"] = numeric.mean(axis=1)
    frame["row_std"] = numeric.std(axis=1)
features += ["row_mean", "row_std"]
categorical = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
numeric = [c for c in features if c not in categorical]
model = make_pipeline(
    ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         categorical),
    ]),
    HistGradientBoostingClassifier(max_iter=100, random_state=0),
)
y = train[target].astype(str)
print("cv accuracy", cross_val_score(model, train[features], y, cv=3).mean())
model.fit(train[features], y)
submission = pd.DataFrame({id_col: test[id_col], target: model.predict(test[features])})
submission[sample.columns].to_csv("submission.csv", index=False)
print("wrote", len(submission), "rows")
"""


def generated_task(root: Path, rows: int, seed: int = 0) -> Path:
    """A tabular binary task in the prepared-task layout (public/ only; the benchmark grades nothing)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    rng = np.random.default_rng(seed)
    frame["city"] = rng.choice(["a", "b", "c", "d"], size=rows)
    frame.loc[rng.random(rows) < 0.05, "f0"] = np.nan
    frame.insert(0, "id", np.arange(rows))
    frame["label"] = y
    cut = int(rows * 0.8)
    public = root / "public"
    public.mkdir(parents=True)
    frame.iloc[:cut].to_csv(public / "train.csv", index=False)
    frame.iloc[cut:].drop(columns="label").to_csv(public / "test.csv", index=False)
    frame.iloc[cut:][["id"]].assign(label=0).to_csv(public / "sample_submission.csv", index=False)
    (public / "task.json").write_text('{"id_column": "id", "targets": ["label"]}')
    return public


def prepared_task(slug: str, cache_dir: Path) -> Path:
    from src.tasks.prepare import prepare_task
    from src.tasks.registry import load_task

    data_dir = Path(os.environ.get("PIPESYNTH_SHARED", REPO_ROOT.parent / "shared")) / "data" / "kaggle"
    return Path(prepare_task(load_task(data_dir, slug), cache_dir, seed=0).public_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--task", default=None, help="a real task slug instead of the generated one")
    parser.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    args = parser.parse_args()

    cfg = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "sandbox" / "default.yaml"))
    cfg.pop("_target_")
    cfg.update(isolation=args.isolation, timeout_s=600)
    sandbox = Sandbox(**cfg)

    with tempfile.TemporaryDirectory(prefix="pipesynth-bench-") as tmp:
        root = Path(tmp)
        public = (
            prepared_task(args.task, root / "cache")
            if args.task
            else generated_task(root / "task", args.rows)
        )
        script = root / "solution.py"
        script.write_text(SOLUTION)

        bare_dir = root / "bare"
        bare_dir.mkdir()
        shutil.copytree(public, bare_dir / "input")
        shutil.copyfile(script, bare_dir / "solution.py")
        # the sandbox's environment: the same thread counts and locale, nothing inherited
        env = {
            "PATH": f"{Path(sandbox.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(bare_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
            **sandbox.env,
        }

        def bare() -> float:
            started = time.perf_counter()
            done = subprocess.run([sandbox.python, "solution.py"], cwd=bare_dir, env=env, capture_output=True)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"bare run failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
            return elapsed

        def jailed() -> float:
            started = time.perf_counter()
            result = sandbox.run(script, public, root / "work")
            elapsed = time.perf_counter() - started
            if result.status != "ok":
                raise SystemExit(
                    f"sandboxed run failed: {result.status}: {result.message}\n{result.stderr_tail}"
                )
            return elapsed

        print(
            f"sandbox isolation: {sandbox.isolation}; python: {sandbox.python}; task: {args.task or 'generated'}"
        )
        bare(), jailed()  # warm-up: page cache, the bwrap probe
        times: dict[str, list[float]] = {"bare": [], "sandbox": []}
        for rep in range(args.reps):
            order = [("bare", bare), ("sandbox", jailed)]
            if rep % 2:
                order.reverse()  # interleaved and alternated, so drift and cache effects hit both alike
            for name, fn in order:
                times[name].append(fn())
            print(
                f"rep {rep + 1}/{args.reps}: bare {times['bare'][-1]:.3f} s, sandbox {times['sandbox'][-1]:.3f} s"
            )

    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:8s} median {medians[name]:.3f} s  min {min(values):.3f} s  max {max(values):.3f} s")
    # on a shared machine the adjacent pairs see the same load: their ratios are the steadier figure
    paired = statistics.median(j / b for b, j in zip(times["bare"], times["sandbox"], strict=True))
    print(
        f"paired median ratio {paired:.3f}; ratio of minima {min(times['sandbox']) / min(times['bare']):.3f}"
    )
    print(f"sandbox_overhead_ratio={medians['sandbox'] / medians['bare']:.3f}")


if __name__ == "__main__":
    main()
