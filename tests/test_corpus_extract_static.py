"""Static (ast) instruction extraction on realistic solution snippets."""

from __future__ import annotations

import pytest

from src.corpus.code4ml import InstructionExtractor
from src.corpus.extract_static import StaticExtractor, analyze
from src.corpus.instruction import parse_instruction

LGBM_CV = """
import numpy as np, pandas as pd
import lightgbm as lgb
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.impute import SimpleImputer
train = pd.read_csv('../input/titanic/train.csv')
test = pd.read_csv('../input/titanic/test.csv')
train[num_cols] = SimpleImputer(strategy='median').fit_transform(train[num_cols])
for c in ['Sex', 'Embarked']:
    le = LabelEncoder()
    train[c] = le.fit_transform(train[c].astype(str))
skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=42)
preds = np.zeros(len(test))
for fold, (tr, va) in enumerate(skf.split(X, y)):
    model = lgb.LGBMClassifier(n_estimators=2000, learning_rate=0.02, num_leaves=31, n_jobs=-1)
    model.fit(X.iloc[tr], y.iloc[tr], eval_set=[(X.iloc[va], y.iloc[va])],
              callbacks=[lgb.early_stopping(100), lgb.log_evaluation(0)])
    preds += model.predict_proba(test)[:, 1] / skf.n_splits
"""

TFIDF_LOGREG = """
%matplotlib inline
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
df = pd.read_csv("../input/train.csv")
vec = TfidfVectorizer(ngram_range=(1, 2), max_features=50000, sublinear_tf=True, stop_words='english')
X = vec.fit_transform(df.text)
clf = LogisticRegression(C=4.0, solver='liblinear', random_state=0)
print(cross_val_score(clf, X, df.author, cv=5, scoring='neg_log_loss').mean())
clf.fit(X, df.author)
"""

KERAS_CNN = """
from keras.models import Sequential
from keras.layers import Conv2D, MaxPooling2D, Flatten, Dense, Dropout
from keras.preprocessing.image import ImageDataGenerator
from keras.callbacks import EarlyStopping
# %%
!pip install -q something
model = Sequential()
model.add(Conv2D(32, (3, 3), activation='relu', input_shape=(128, 128, 3)))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Flatten())
model.add(Dense(256, activation='relu'))
model.add(Dropout(0.5))
model.add(Dense(12, activation='softmax'))
model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
# %%
datagen = ImageDataGenerator(rotation_range=20, horizontal_flip=True, rescale=1 / 255.0)
model.fit(datagen.flow(x_train, y_train, batch_size=64), epochs=30,
          validation_data=(x_val, y_val), callbacks=[EarlyStopping(monitor='val_loss', patience=5)])
# %%
this cell is not python (
"""

LGB_TRAIN_PARAMS = """
import lightgbm as lgb
params = {'objective': 'regression', 'learning_rate': 0.05, 'num_leaves': 40, 'verbose': -1}
dtrain = lgb.Dataset(X, y)
booster = lgb.train(params, dtrain, num_boost_round=1000, valid_sets=[dvalid], early_stopping_rounds=50)
"""

TORCH = """
import torch, torch.nn as nn, timm
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model('efficientnet_b0', pretrained=True, num_classes=0)
        self.head = nn.Linear(1280, 5)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
criterion = nn.CrossEntropyLoss()
"""


def sections(code: str) -> tuple[str, str, str]:
    ins = parse_instruction(StaticExtractor().extract(code))
    assert ins.is_complete, ins.text
    return ins.preprocessing or "", ins.architecture or "", ins.training or ""


def test_lightgbm_with_stratified_kfold_and_early_stopping() -> None:
    pre, arch, train = sections(LGBM_CV)
    assert "Reads train.csv, test.csv." in pre
    assert (
        "Imputation: SimpleImputer(strategy='median')" in pre
        and "Categorical encoding: LabelEncoder()" in pre
    )
    assert "LightGBM model LGBMClassifier(n_estimators=2000, learning_rate=0.02, num_leaves=31)" in arch
    assert "n_jobs" not in arch  # noise keywords are not hyperparameters
    assert "StratifiedKFold with n_splits=5 (shuffle=True)" in train
    assert "Early stopping: early_stopping(100)" in train and "monitoring a validation set" in train
    assert "averaged over the cross-validation folds" in train


def test_tfidf_and_logistic_regression() -> None:
    pre, arch, train = sections(TFIDF_LOGREG)  # the %matplotlib magic does not break parsing
    assert "Text features: TfidfVectorizer(ngram_range=(1, 2), max_features=50000, sublinear_tf=True" in pre
    assert "scikit-learn model LogisticRegression(C=4.0, solver='liblinear')" in arch
    assert "Cross-validation with cross_val_score(cv=5)" in train


def test_keras_cnn_and_a_broken_cell() -> None:
    facts = analyze(KERAS_CNN)
    assert (facts.cells, facts.cells_failed) == (4, 1)  # the broken cell is skipped, not the notebook
    pre, arch, train = sections(KERAS_CNN)
    assert "Image preprocessing: ImageDataGenerator(rotation_range=20, horizontal_flip=True" in pre
    assert arch.startswith("- Keras network layers: Conv2D(32, (3, 3), activation='relu'")
    assert "-> Dense(12, activation='softmax')" in arch
    assert "Compiled with optimizer='adam', loss='categorical_crossentropy'" in train
    assert "Trained with fit(epochs=30, monitoring a validation set)" in train
    assert "Early stopping: EarlyStopping(monitor='val_loss', patience=5)" in train


def test_params_dict_feeds_lgb_train_and_training_kwargs_stay_in_training() -> None:
    _, arch, train = sections(LGB_TRAIN_PARAMS)
    assert "LightGBM model via lgb.train(objective='regression', learning_rate=0.05, num_leaves=40)" in arch
    assert "num_boost_round" not in arch
    assert "num_boost_round=1000, early_stopping_rounds=50, monitoring a validation set" in train


def test_torch_backbone_optimizer_and_loss() -> None:
    _, arch, train = sections(TORCH)
    assert "timm backbone model create_model('efficientnet_b0', pretrained=True, num_classes=0)" in arch
    assert "PyTorch network layers: Linear(1280, 5)" in arch
    assert "Optimizer AdamW(lr=0.0003, weight_decay=0.01)" in train and "Loss CrossEntropyLoss" in train


def test_empty_sections_say_so_and_unparseable_code_raises() -> None:
    text = StaticExtractor().extract("print('hello')")
    assert parse_instruction(text).is_complete  # the three headings are always there
    assert "No model definition found in the code." in text
    with pytest.raises(ValueError, match="parses as Python"):
        StaticExtractor().extract("def broken(:\n")


def test_static_extractor_satisfies_the_extractor_protocol() -> None:
    assert isinstance(StaticExtractor(), InstructionExtractor)
