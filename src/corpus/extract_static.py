"""Offline instruction extraction: static analysis (ast) of a solution's code -> a three-section instruction.

For corpora that hold code but no instruction (Code4ML). Reads what the code calls, never runs it:

- Data preprocessing: files read, imputation, categorical encoding, scaling/transforms, text features
  (TfidfVectorizer, tokenizers), image preprocessing/augmentation, dimensionality reduction, splits.
- Model architecture: estimator family and its key hyperparameters from the call's keywords
  (`LGBMClassifier(n_estimators=2000, learning_rate=0.02)`, `lgb.train(params, ...)` with `params` a dict
  literal, XGBoost, CatBoost, scikit-learn, Keras layers and applications, torch `nn` layers, timm/torchvision/
  transformers backbones), ensembles (voting, stacking, blending).
- Model training: CV scheme (KFold/StratifiedKFold n_splits), early stopping, fold averaging, hyperparameter
  search, optimizer/loss/epochs/batch size.

The output has the same `Data preprocessing:` / `Model architecture:` / `Model training:` headings as the
paper's GPT-extracted instructions, so `parse_instruction` reads it. Notebook cells joined with `# %%` are parsed
one by one (a cell with a syntax error is skipped, not the whole notebook); IPython magics are ignored.

    text = StaticExtractor().extract(open("solution.py").read())
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field

_MAGIC = re.compile(r"^(\s*)[!%].*$", re.MULTILINE)
_CELL = re.compile(r"^# ?%%.*$", re.MULTILINE)
_NOISE_KWARGS = {
    "verbose",
    "verbosity",
    "n_jobs",
    "silent",
    "random_state",
    "seed",
    "random_seed",
    "nthread",
    "thread_count",
    "logging_level",
    "gpu_id",
    "device",
    "verbose_eval",
}

# call name -> (section, label); names are matched as "a.b.C", "b.C" and "C" (most specific first)
_PREPROCESSING = {
    "SimpleImputer": "imputation",
    "KNNImputer": "imputation",
    "IterativeImputer": "imputation",
    "fillna": "imputation",
    "dropna": "drops missing values",
    "interpolate": "imputation",
    "LabelEncoder": "categorical encoding",
    "OneHotEncoder": "categorical encoding",
    "OrdinalEncoder": "categorical encoding",
    "TargetEncoder": "categorical encoding",
    "get_dummies": "categorical encoding",
    "factorize": "categorical encoding",
    "StandardScaler": "scaling",
    "MinMaxScaler": "scaling",
    "RobustScaler": "scaling",
    "MaxAbsScaler": "scaling",
    "Normalizer": "scaling",
    "QuantileTransformer": "scaling",
    "PowerTransformer": "scaling",
    "log1p": "log transform",
    "TfidfVectorizer": "text features",
    "CountVectorizer": "text features",
    "HashingVectorizer": "text features",
    "Tokenizer": "text features",
    "pad_sequences": "text features",
    "AutoTokenizer.from_pretrained": "text features",
    "BertTokenizer.from_pretrained": "text features",
    "word_tokenize": "text features",
    "PorterStemmer": "text features",
    "WordNetLemmatizer": "text features",
    "ImageDataGenerator": "image preprocessing",
    "cv2.resize": "image preprocessing",
    "transforms.Resize": "image preprocessing",
    "transforms.Normalize": "image preprocessing",
    "transforms.RandomHorizontalFlip": "image augmentation",
    "transforms.RandomRotation": "image augmentation",
    "A.Resize": "image preprocessing",
    "A.HorizontalFlip": "image augmentation",
    "A.Normalize": "image preprocessing",
    "PCA": "dimensionality reduction",
    "TruncatedSVD": "dimensionality reduction",
    "SelectKBest": "feature selection",
    "VarianceThreshold": "feature selection",
    "train_test_split": "hold-out split",
}
_MODELS = {
    "LGBMClassifier": "LightGBM",
    "LGBMRegressor": "LightGBM",
    "LGBMRanker": "LightGBM",
    "lgb.train": "LightGBM",
    "lightgbm.train": "LightGBM",
    "XGBClassifier": "XGBoost",
    "XGBRegressor": "XGBoost",
    "xgb.train": "XGBoost",
    "xgboost.train": "XGBoost",
    "CatBoostClassifier": "CatBoost",
    "CatBoostRegressor": "CatBoost",
    **{
        name: "scikit-learn"
        for name in (
            "RandomForestClassifier RandomForestRegressor ExtraTreesClassifier ExtraTreesRegressor "
            "GradientBoostingClassifier GradientBoostingRegressor HistGradientBoostingClassifier "
            "HistGradientBoostingRegressor AdaBoostClassifier AdaBoostRegressor DecisionTreeClassifier "
            "DecisionTreeRegressor LogisticRegression LinearRegression Ridge RidgeClassifier Lasso ElasticNet "
            "SGDClassifier SGDRegressor SVC SVR LinearSVC LinearSVR KNeighborsClassifier KNeighborsRegressor "
            "MultinomialNB GaussianNB BernoulliNB MLPClassifier MLPRegressor KernelRidge BayesianRidge"
        ).split()
    },
    "timm.create_model": "timm backbone",
    "Sequential": "Keras Sequential network",
}
_ENSEMBLES = {
    "VotingClassifier",
    "VotingRegressor",
    "StackingClassifier",
    "StackingRegressor",
    "BaggingClassifier",
    "BaggingRegressor",
}
_KERAS_APPS = re.compile(
    r"^(ResNet\d+\w*|EfficientNet\w+|VGG\d+|InceptionV3|InceptionResNetV2|Xception|DenseNet\d+|MobileNet\w*|NASNet\w+)$"
)
_TORCHVISION = re.compile(
    r"^(?:models|torchvision\.models)\.(resnet\d+|resnext\w+|densenet\d+|efficientnet_\w+|vgg\d+\w*|mobilenet\w+|inception_v3|convnext\w+|vit_\w+)$"
)
_LAYERS = set(
    (
        "Dense Conv1D Conv2D Conv3D SeparableConv2D MaxPooling1D MaxPooling2D AveragePooling2D GlobalAveragePooling1D "
        "GlobalAveragePooling2D GlobalMaxPooling1D GlobalMaxPooling2D Dropout SpatialDropout1D BatchNormalization "
        "Flatten LSTM GRU Bidirectional Embedding Activation LayerNormalization Concatenate Input "
        "Linear Conv2d Conv1d LSTM GRU Embedding Dropout BatchNorm1d BatchNorm2d ReLU MaxPool2d AdaptiveAvgPool2d"
    ).split()
)
_CV = {
    "KFold",
    "StratifiedKFold",
    "GroupKFold",
    "StratifiedGroupKFold",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
    "TimeSeriesSplit",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
}
_SEARCH = {"GridSearchCV", "RandomizedSearchCV", "optuna.create_study", "BayesSearchCV"}
_CALLBACKS = {
    "EarlyStopping",
    "ReduceLROnPlateau",
    "ModelCheckpoint",
    "LearningRateScheduler",
    "lgb.early_stopping",
    "early_stopping",
}
_OPTIMIZERS = {"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Nadam"}
_LOSSES = re.compile(r"^(?:nn\.)?(\w+Loss)$")


@dataclass
class CallInfo:
    """One call in the code: its dotted name and its arguments rendered as short source text."""

    name: str
    args: list[str]
    kwargs: dict[str, str]

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def render(self, skip_noise: bool = True, max_items: int = 8) -> str:
        items = [
            *self.args,
            *(f"{k}={v}" for k, v in self.kwargs.items() if not (skip_noise and k in _NOISE_KWARGS)),
        ]
        more = ", ..." if len(items) > max_items else ""
        return f"{self.short}({', '.join(items[:max_items])}{more})"


@dataclass
class CodeFacts:
    """What the static pass found: calls in source order, files read, fold averaging, parse statistics."""

    calls: list[CallInfo] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    fold_average: bool = False
    cells: int = 0
    cells_failed: int = 0


def _value(node: ast.AST, max_len: int = 40) -> str:
    """Short source text of an argument: the literal's repr, else the expression, cut at max_len."""
    try:
        value = ast.literal_eval(node)
        text = repr(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        text = ast.unparse(node)
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return None  # calls on call results (X()(...)) and subscripts have no stable name


class _Visitor(ast.NodeVisitor):
    def __init__(self, facts: CodeFacts) -> None:
        self.facts = facts
        # name -> dict literal, for lgb.train(params, ...) and **params
        self.dicts: dict[str, dict[str, str]] = {}
        self.loop_depth = 0

    def visit_Assign(self, node: ast.Assign) -> None:
        if (
            isinstance(node.value, ast.Dict)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            entries = {}
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    entries[k.value] = _value(v)
            self.dicts[node.targets[0].id] = entries
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self.loop_depth += 1
        self.generic_visit(node)
        self.loop_depth -= 1

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # `preds += model.predict(X_test) / n_splits` inside the fold loop: test predictions averaged over folds
        if self.loop_depth and isinstance(node.op, ast.Add) and isinstance(node.value, ast.BinOp):
            if isinstance(node.value.op, ast.Div) and any(
                isinstance(n, ast.Call) for n in ast.walk(node.value.left)
            ):
                self.facts.fold_average = True
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name:
            args = []
            for a in node.args:
                if isinstance(a, ast.Name) and a.id in self.dicts:
                    args.append(a.id)
                else:
                    args.append(_value(a))
            kwargs: dict[str, str] = {}
            for kw in node.keywords:
                if kw.arg is None and isinstance(kw.value, ast.Name) and kw.value.id in self.dicts:
                    kwargs.update(self.dicts[kw.value.id])  # **params
                elif kw.arg is not None:
                    kwargs[kw.arg] = _value(kw.value)
            # positional dict literals by name (lgb.train(params, dtrain)) become keywords
            for a in node.args:
                if isinstance(a, ast.Name) and a.id in self.dicts and _lookup(name, _MODELS):
                    kwargs = {**self.dicts[a.id], **kwargs}
                    args.remove(a.id)
            self.facts.calls.append(CallInfo(name, args, kwargs))
            if name.endswith(("read_csv", "read_json", "read_parquet", "read_feather")) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    self.facts.files.append(first.value.rsplit("/", 1)[-1])
        self.generic_visit(node)


def _lookup(name: str, table: dict[str, str] | set[str]) -> str | None:
    parts = name.split(".")
    for k in range(len(parts)):
        key = ".".join(parts[k:])
        if key in table:
            return table[key] if isinstance(table, dict) else key
    return None


def analyze(code: str) -> CodeFacts:
    """Parse `code` cell by cell (cells split at `# %%`) and collect the calls; magics are blanked out."""
    facts = CodeFacts()
    cells = [c for c in _CELL.split(code) if c.strip()] or [code]
    for cell in cells:
        facts.cells += 1
        try:
            tree = ast.parse(_MAGIC.sub(r"\1pass", cell))
        except (SyntaxError, ValueError):
            facts.cells_failed += 1
            continue
        _Visitor(facts).visit(tree)
    return facts


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _preprocessing(facts: CodeFacts) -> list[str]:
    lines = []
    if facts.files:
        lines.append(f"Reads {', '.join(_unique(facts.files))}.")
    by_label: dict[str, list[str]] = {}
    for call in facts.calls:
        label = _lookup(call.name, _PREPROCESSING)
        if label:
            shown = (
                call.render() if call.short[0].isupper() or call.short == "train_test_split" else call.short
            )
            by_label.setdefault(label, []).append(shown)
    for label, shown in by_label.items():
        lines.append(f"{label[0].upper()}{label[1:]}: {'; '.join(_unique(shown)[:4])}.")
    return lines


_TRAIN_KWARGS = {
    "num_boost_round",
    "early_stopping_rounds",
    "valid_sets",
    "valid_names",
    "evals",
    "callbacks",
    "feval",
    "train_set",
    "dtrain",
    "verbose_eval",
}
_FIT_KEYS = ("epochs", "batch_size", "num_boost_round", "early_stopping_rounds", "validation_split")
_VALIDATION_KEYS = ("eval_set", "valid_sets", "evals", "validation_data")


def _architecture(facts: CodeFacts) -> list[str]:
    lines = []
    for call in facts.calls:
        family = _lookup(call.name, _MODELS)
        if family and call.short == "train":  # lgb.train(params, dtrain, ...): the params are the model
            model = CallInfo(call.name, [], {k: v for k, v in call.kwargs.items() if k not in _TRAIN_KWARGS})
            lines.append(f"{family} model via {call.name}{model.render()[len(model.short) :]}.")
        elif family and call.short != "Sequential":
            lines.append(f"{family} model {call.render()}.")
        elif _KERAS_APPS.match(call.short):
            lines.append(f"Keras pretrained backbone {call.render()}.")
        elif _TORCHVISION.match(call.name):
            lines.append(f"torchvision backbone {call.render()}.")
        elif call.short == "from_pretrained" and re.search(r"Model|For[A-Z]", call.name):
            lines.append(
                f"Transformer {call.name.split('.')[0]} from {', '.join(call.args[:1]) or 'a checkpoint'}."
            )
        elif call.short in _ENSEMBLES:
            lines.append(f"Ensemble {call.render()}.")
    layers = [c for c in facts.calls if c.short in _LAYERS]
    if layers:
        keras = any(c.short == "Sequential" or "keras" in c.name or "layers." in c.name for c in facts.calls)
        kind = (
            "PyTorch" if any(c.name.startswith("nn.") for c in layers) else ("Keras" if keras else "Neural")
        )
        shown = [c.render(max_items=4) for c in layers[:12]]
        extra = f" (+{len(layers) - 12} more layers)" if len(layers) > 12 else ""
        lines.append(f"{kind} network layers: {' -> '.join(shown)}{extra}.")
    return _unique(lines)


def _training_call(call: CallInfo) -> str | None:
    """A fit()/train() call's epochs, rounds, batch size, early stopping and validation monitoring."""
    opts = [f"{k}={call.kwargs[k]}" for k in _FIT_KEYS if k in call.kwargs]
    if any(k in call.kwargs for k in _VALIDATION_KEYS):
        opts.append("monitoring a validation set")
    if not opts:
        return None
    return f"Trained with {call.short}({', '.join(opts)})."


def _training(facts: CodeFacts) -> list[str]:
    lines = []
    for call in facts.calls:
        if call.short in _CV:
            splits = call.kwargs.get("n_splits") or (call.args[0] if call.args else "default")
            rest = {k: v for k, v in call.kwargs.items() if k != "n_splits" and k not in _NOISE_KWARGS}
            opts = f" ({', '.join(f'{k}={v}' for k, v in rest.items())})" if rest else ""
            lines.append(f"Cross-validation: {call.short} with n_splits={splits}{opts}.")
        elif call.short in {"cross_val_score", "cross_val_predict", "cross_validate"}:
            lines.append(f"Cross-validation with {call.short}(cv={call.kwargs.get('cv', 'default')}).")
        elif _lookup(call.name, _SEARCH):
            lines.append(f"Hyperparameter search: {call.render()}.")
        elif call.short.lower() in {"earlystopping", "early_stopping"}:
            lines.append(f"Early stopping: {call.render()}.")
        elif _lookup(call.name, _CALLBACKS):
            lines.append(f"Callback {call.render()}.")
        elif call.short in _OPTIMIZERS:
            lines.append(
                f"Optimizer {CallInfo(call.name, [], call.kwargs).render()}."
            )  # no model.parameters()
        elif _LOSSES.match(call.short):
            lines.append(f"Loss {call.short}.")
        elif call.short == "compile" and ("loss" in call.kwargs or "optimizer" in call.kwargs):
            lines.append(f"Compiled with {call.render()[len('compile(') : -1]}.")
        elif call.short in {"fit", "fit_generator", "train"} and (line := _training_call(call)):
            lines.append(line)
        elif call.short in {"Trainer", "TrainingArguments"}:
            keys = ("num_train_epochs", "learning_rate", "per_device_train_batch_size", "weight_decay")
            opts = [f"{k}={call.kwargs[k]}" for k in keys if k in call.kwargs]
            lines.append(f"Hugging Face {call.short}({', '.join(opts)}).")
        if "early_stopping_rounds" in call.kwargs and call.short not in {"fit", "fit_generator", "train"}:
            lines.append(
                f"Early stopping after {call.kwargs['early_stopping_rounds']} rounds without improvement."
            )
    if facts.fold_average:
        lines.append("Ensembling: test predictions are averaged over the cross-validation folds.")
    fits = Counter(c.short for c in facts.calls if c.short in {"fit", "train", "fit_generator"})
    if not lines and fits:
        lines.append(f"Models are trained with {', '.join(f'{n}()' for n in fits)}.")
    return _unique(lines)


class StaticExtractor:
    """`extract(code) -> str`: the three-section instruction read from the code by static analysis."""

    def __init__(self, max_lines_per_section: int = 12) -> None:
        self.max_lines = max_lines_per_section

    def extract(self, code: str) -> str:
        facts = analyze(code)
        if facts.cells == facts.cells_failed:
            # a property of this notebook, not of the configuration: the Code4ML loader counts it as failed
            raise ValueError(f"none of the {facts.cells} code cell(s) parses as Python")
        sections = {
            "Data preprocessing": _preprocessing(facts)
            or ["No explicit preprocessing step found in the code."],
            "Model architecture": _architecture(facts) or ["No model definition found in the code."],
            "Model training": _training(facts) or ["No explicit training procedure found in the code."],
        }
        return "\n\n".join(
            f"{heading}:\n" + "\n".join(f"- {line}" for line in lines[: self.max_lines])
            for heading, lines in sections.items()
        )
