"""Built-in solution `baseline_constant`: predicts the training prior (classification) or a central value (regression).

A sandboxed script like any other: reads ./input/ (train.csv, test.csv, sample_submission.csv, task.json) and
writes ./submission.csv. It is the honest floor every generated solution must beat.
"""

import json

import numpy as np
import pandas as pd

task = json.load(open("input/task.json"))
train = pd.read_csv("input/train.csv")
sample = pd.read_csv("input/sample_submission.csv")
id_col = task["id_column"]
targets = task["targets"]
metric = task["metric"]
columns = task.get("submission_columns") or list(sample.columns.drop(id_col))
submission = pd.DataFrame({id_col: sample[id_col]})

if task["task_type"] == "multiclass_classification" and metric == "multiclass_log_loss":
    # one probability column per class: the class frequencies of the training set
    prior = train[targets[0]].astype(str).value_counts(normalize=True)
    for col in columns:
        submission[col] = float(prior.get(str(col), 0.0))
elif task["task_type"] in ("binary_classification", "multiclass_classification") and metric != "roc_auc":
    # a label metric (accuracy, micro F1): the majority class, in the training set's own dtype
    for target in targets:
        submission[target] = train[target].mode().iloc[0]
elif task["task_type"] in ("binary_classification", "multilabel_classification"):
    # a ranking metric (AUC): the positive rate; constant scores rank every row equally (AUC 0.5)
    for target in targets:
        submission[target] = float(train[target].astype(float).mean())
else:  # regression: the value that minimises the metric among constants
    for target in targets:
        y = train[target].astype(float)
        if metric in ("rmsle", "rmse_log", "mean_column_rmsle"):
            value = float(np.expm1(np.log1p(y.clip(lower=0)).mean()))
        elif metric == "mae":
            value = float(y.median())
        else:
            value = float(y.mean())
        submission[target] = value

submission = submission[[id_col, *columns]]
submission.to_csv("submission.csv", index=False)
print(f"baseline_constant: wrote {len(submission)} rows")
