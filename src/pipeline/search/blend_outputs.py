"""How a blend combines its members' predictions — one source for the search and for the blend script.

The search (src.pipeline.search.blend) fits the weights on the members' out-of-fold predictions with these functions,
and the blend script it writes embeds this module's source verbatim, so the predictions the weights were fitted
on and the predictions the script submits are combined the same way. numpy and pandas only: the script runs in
the sandbox without pipesynth.

kind: "label" (each cell a class label: a weighted vote) or "mean" (probabilities or values: a weighted mean);
normalize: rows of the result sum to one (one probability column per class). A stack (one probability column per
class only) replaces the weights by a learner fitted on the members' out-of-fold predictions: "linear", a
multinomial logistic regression over their log-probabilities, or "gbdt", LightGBM over their probabilities and
per-row statistics of the task's free text (length, words, punctuation: style signals the members' bags of n-grams
do not see). Its own out-of-fold predictions come from cross-validation over those rows.
"""

import os
import re

import numpy as np
import pandas as pd


def blend_arrays(preds, weights, kind, normalize=False):
    """Members' predictions (each (n,) or (n, k), rows aligned) combined with `weights` (one per member)."""
    weights = np.asarray(weights, dtype=float)
    if kind == "label":
        stacked = np.stack([np.asarray(p, dtype=object) for p in preds])  # (m, n[, k])
        flat = stacked.reshape(len(preds), -1)
        labels = np.unique(flat.astype(str))
        tally = np.zeros((flat.shape[1], len(labels)))
        lead = int(np.argmax(weights))  # ties go to the heaviest member's label
        for j, member in enumerate(flat.astype(str)):
            hits = member[:, None] == labels[None, :]
            tally += hits * (weights[j] + (1e-9 if j == lead else 0.0))
        return labels[tally.argmax(axis=1)].reshape(stacked.shape[1:])
    values = np.tensordot(
        weights / weights.sum(), np.stack([np.asarray(p, dtype=float) for p in preds]), axes=1
    )
    if normalize and values.ndim == 2:
        values = values / np.clip(values.sum(axis=1, keepdims=True), 1e-15, None)
    return values


def read_outputs(folder):
    """A solution's (submission, out-of-fold) frames from the folder it ran in, every cell as written."""

    def read(name):
        return pd.read_csv(os.path.join(folder, name), dtype=str, keep_default_na=False)

    return read("submission.csv"), read("oof_submission.csv")


def align_frames(frames, id_column):
    """(ids, columns, one array per frame) with every frame's rows in the first frame's id order."""
    base = frames[0]
    ids = base[id_column].astype(str)
    columns = [c for c in base.columns if c != id_column]
    arrays = []
    for frame in frames:
        frame = frame.set_index(frame[id_column].astype(str))
        missing = ids[~ids.isin(frame.index)]
        if len(missing):
            raise ValueError(f"a member's predictions lack {len(missing)} ids (e.g. {missing.iloc[0]})")
        arrays.append(frame.loc[ids, columns].to_numpy())
    return base[id_column].to_numpy(), columns, arrays


def as_frame(ids, id_column, columns, values):
    """A submission-format frame: ids, then one column per entry of `columns`."""
    out = pd.DataFrame({id_column: ids})
    out[columns] = np.asarray(values).reshape(len(ids), len(columns))
    return out


def blend_frames(frames, weights, id_column, kind, normalize=False):
    """Submission-format frames (the same columns) combined row by row on the first frame's ids."""
    ids, columns, arrays = align_frames(frames, id_column)
    return as_frame(ids, id_column, columns, blend_arrays(arrays, weights, kind, normalize))


def class_index(labels, columns):
    """Each label's position among the class columns (None when a label names no column)."""
    position = {str(c).strip(): i for i, c in enumerate(columns)}
    index = [position.get(str(v).strip()) for v in labels]
    return None if any(i is None for i in index) else np.asarray(index)


STACK_METHODS = {"stack": "linear", "stack_gbdt": "gbdt"}  # blend method -> its stack learner
STACK_LEARNERS = tuple(STACK_METHODS.values())
PUNCTUATION = ",.;:!?'\"-()"  # one count per mark in the row statistics


def text_statistics(frame, skip=()):
    """Per-row statistics of the free-text columns of `frame` (string columns averaging three words or more, the
    solution scripts' rule): characters, words, mean word length, uppercase share and one count per punctuation
    mark. None when no column is free text."""
    blocks = []
    for col in frame.columns:
        if col in skip:
            continue
        values = frame[col].fillna("").astype(str)
        words = values.str.split().str.len()
        if pd.api.types.is_numeric_dtype(frame[col]) or words.mean() < 3:
            continue
        chars = values.str.len()
        block = {"chars": chars, "words": words, "word_length": chars / words.clip(lower=1)}
        block["upper"] = values.str.count(r"[A-Z]") / chars.clip(lower=1)
        block.update({f"count{i}": values.str.count(re.escape(mark)) for i, mark in enumerate(PUNCTUATION)})
        blocks.append(pd.DataFrame(block).add_prefix(f"{col}:"))
    return pd.concat(blocks, axis=1).astype(float) if blocks else None


def row_statistics(train, test, id_column, skip=()):
    """text_statistics of the train and test rows, indexed by id as text (None without free text)."""
    frames = [f.drop_duplicates(id_column) for f in (train, test)]
    both = pd.concat(frames, ignore_index=True)
    stats = text_statistics(both.drop(columns=[id_column]), skip)
    if stats is None:
        return None
    stats.index = both[id_column].astype(str)
    return stats[~stats.index.duplicated()]


def stack_features(preds, learner="linear", extra=None):
    """Members' class probabilities (each (n, k)) -> the stacker's inputs: (n, members x k) log-probabilities
    (linear), or the probabilities and the `extra` row statistics (gbdt)."""
    if learner == "linear":
        return np.hstack([np.log(np.clip(np.asarray(p, dtype=float), 1e-15, 1.0)) for p in preds])
    blocks = [np.asarray(p, dtype=float) for p in preds]
    return np.hstack(blocks + ([np.asarray(extra, dtype=float)] if extra is not None else []))


def fit_stacker(preds, y, C=1.0, learner="linear", extra=None):
    """The stacker over the members' predictions: a multinomial logistic regression (linear) or small, slow
    LightGBM trees (gbdt; leaves need fewer rows on a small task)."""
    features = stack_features(preds, learner, extra)
    if learner == "linear":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=2000).fit(features, y)
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=15,
        min_child_samples=min(40, max(5, len(y) // 50)),
        colsample_bytree=0.5,
        subsample=0.8,
        subsample_freq=1,
        random_state=0,
        n_jobs=1,
        verbose=-1,
    ).fit(features, y)


def stack_predict(stacker, preds, n_classes, learner="linear", extra=None):
    """Class probabilities (n, n_classes) of a fitted stacker (classes absent from its fit get zero)."""
    out = np.zeros((len(preds[0]), n_classes))
    out[:, stacker.classes_] = stacker.predict_proba(stack_features(preds, learner, extra))
    return out


def stacked_oof(preds, y, n_classes, folds=5, seed=0, C=1.0, learner="linear", extra=None):
    """Cross-validated predictions of the stacker on the rows it would be fitted on."""
    from sklearn.model_selection import StratifiedKFold

    def rows(values, index):
        return None if values is None else np.asarray(values, dtype=float)[index]

    out = np.zeros((len(y), n_classes))
    splits = StratifiedKFold(min(folds, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for fit_rows, val_rows in splits.split(np.zeros(len(y)), y):
        part = fit_stacker([rows(p, fit_rows) for p in preds], y[fit_rows], C, learner, rows(extra, fit_rows))
        out[val_rows] = stack_predict(
            part, [rows(p, val_rows) for p in preds], n_classes, learner, rows(extra, val_rows)
        )
    return out


def combine_outputs(
    outputs, weights, id_column, kind, normalize, method="weights", labels=None, C=1.0, statistics=None
):
    """(submission, out-of-fold) frames of a blend from its members' (submission, out-of-fold) frames.

    outputs: one (submission, oof) pair per member, None for a member that failed; weights: one per member.
    method "stack" (a linear stacker) or "stack_gbdt" (LightGBM over the probabilities and `statistics`, the
    row_statistics frame) needs every member and `labels` (train id -> label); without them, or for "weights",
    the members that ran are combined with their weights (renormalised; equal when every weight left is zero).
    """
    ran = [i for i, out in enumerate(outputs) if out is not None]
    if not ran:
        raise ValueError("no member of the blend produced predictions")
    subs = [outputs[i][0] for i in ran]
    oofs = [outputs[i][1] for i in ran]
    if method in STACK_METHODS and len(ran) == len(outputs) and labels is not None:
        learner = STACK_METHODS[method]
        oof_ids, columns, oof_preds = align_frames(oofs, id_column)
        sub_ids, _, sub_preds = align_frames(subs, id_column)
        y = class_index(labels.reindex(pd.Index(oof_ids).astype(str)).to_numpy(), columns)
        if y is not None and np.bincount(y, minlength=len(columns)).min() >= 2:

            def extra(ids):  # the linear stacker leaves them out
                if statistics is None:
                    return None
                return statistics.reindex(pd.Index(ids).astype(str)).fillna(0.0).to_numpy(dtype=float)

            stacker = fit_stacker(oof_preds, y, C, learner, extra(oof_ids))
            submission = as_frame(
                sub_ids,
                id_column,
                columns,
                stack_predict(stacker, sub_preds, len(columns), learner, extra(sub_ids)),
            )
            cross = stacked_oof(oof_preds, y, len(columns), C=C, learner=learner, extra=extra(oof_ids))
            return submission, as_frame(oof_ids, id_column, columns, cross)
    kept = np.asarray([weights[i] for i in ran], dtype=float)
    kept = kept if kept.sum() > 0 else np.ones(len(ran))
    return (
        blend_frames(subs, kept, id_column, kind, normalize),
        blend_frames(oofs, kept, id_column, kind, normalize),
    )
