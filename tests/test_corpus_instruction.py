"""Section splitting of instructions: the corpus's heading variants and markdown-style LLM output."""

from __future__ import annotations

import pytest

from src.corpus.instruction import ParseReport, classify_heading, parse_instruction

PLAIN = """Data preprocessing:
- Missing ages are filled with the median.
- Sex is label-encoded.

Model architecture:
- LightGBM classifier with 500 trees.

Model training:
- 5-fold stratified CV with early stopping.

Model prediction:
- Fold predictions are averaged and written to submission.csv.</s>"""


def test_canonical_sections() -> None:
    ins = parse_instruction(PLAIN)
    assert ins.is_complete and ins.missing == ()
    assert ins.preprocessing == "- Missing ages are filled with the median.\n- Sex is label-encoded."
    assert ins.architecture == "- LightGBM classifier with 500 trees."
    assert ins.training == "- 5-fold stratified CV with early stopping."
    assert ins.prediction == "- Fold predictions are averaged and written to submission.csv."
    assert not ins.text.endswith("</s>")


@pytest.mark.parametrize(
    "style",
    [
        "1. {h}:",
        "**{h}**:",
        "**{h}:**",
        "## {h}",
        "### {h}:",
        "2) {h}:",
        "Step 3: {h}",
        "- {h}:",
        "{h}",
        "**1. {h}:**",
    ],
)
def test_markdown_and_numbered_heading_variants(style: str) -> None:
    text = "\n".join(
        f"{style.format(h=heading)}\n- body of {key}\n"
        for key, heading in [
            ("pre", "Data Preprocessing"),
            ("arch", "Model architecture"),
            ("train", "Model Training"),
        ]
    )
    ins = parse_instruction("Here is the plan:\n\n" + text)
    assert (ins.preprocessing, ins.architecture, ins.training) == (
        "- body of pre",
        "- body of arch",
        "- body of train",
    ), style


def test_combined_heading_fills_both_sections_and_inline_text_is_kept() -> None:
    ins = parse_instruction(
        "From the code, we can gather the following information:\n"
        "1. Data Preprocessing: the images are resized to 128x128.\n"
        "2. Model Architecture and Training:\n   - A ResNet-18 is fine-tuned for 5 epochs.\n"
        "3. Prediction and Submission:\n   - Predictions go to submission.csv.\n"
        "4. Model Evaluation:\n   - Accuracy is printed."
    )
    assert ins.is_complete
    assert ins.preprocessing == "the images are resized to 128x128."
    assert ins.architecture == ins.training == "- A ResNet-18 is fine-tuned for 5 epochs."
    assert ins.prediction == "- Predictions go to submission.csv."
    assert ins.other == {"Model Evaluation": "- Accuracy is printed."}
    assert ins.sections[1].keys == ("architecture", "training")


def test_sub_headings_and_lettered_items_stay_inside_their_section() -> None:
    ins = parse_instruction(
        "1. Data Preprocessing:\n"
        "a. The code reads three CSV files: 'train.csv', 'test.csv' and 'sample_submission.csv'.\n"
        "b. Columns are encoded.\n"
        "   Hyperparameters:\n"
        "2. Model Architecture:\n- Logistic regression.\n"
        "3. Model Training:\n- fit() on all rows."
    )
    assert ins.is_complete
    assert ins.preprocessing.startswith("a. The code reads three CSV files")
    assert "Hyperparameters:" in ins.preprocessing and "b. Columns are encoded." in ins.preprocessing


def test_plain_step_lists_are_not_sections() -> None:
    ins = parse_instruction(
        "The code performs the following tasks:\n"
        "1. Reads the training and test data from CSV files.\n"
        "2. Trains three different models:\n   - Linear Regression\n   - XGBoost\n"
        "3. Makes predictions on the test data."
    )
    assert ins.missing == ("preprocessing", "architecture", "training")
    assert ins.sections == () or all(not s.keys for s in ins.sections)


def test_bullet_points_with_inline_values_are_not_headings() -> None:
    ins = parse_instruction(
        "Model architecture:\n- Model: ResNet50\n- Training: 10 epochs\nModel training:\n- Adam, lr 1e-3"
    )
    assert ins.architecture == "- Model: ResNet50\n- Training: 10 epochs"
    assert ins.training == "- Adam, lr 1e-3"
    assert ins.missing == ("preprocessing",)


def test_render_is_canonical_and_reparses_to_the_same_sections() -> None:
    ins = parse_instruction("**Data preprocessing**:\n- a\n## Model architecture and training\n- b")
    assert ins.render() == "Data preprocessing:\n- a\n\nModel architecture:\n- b\n\nModel training:\n- b"
    again = parse_instruction(ins.render())
    assert (again.preprocessing, again.architecture, again.training) == ("- a", "- b", "- b")


@pytest.mark.parametrize(
    ("title", "keys"),
    [
        ("Data Preprocessing", ("preprocessing",)),
        ("Feature Engineering", ("preprocessing",)),
        ("Preprocessing of the training data", ("preprocessing",)),
        ("Model Architecture and Model Training", ("architecture", "training")),
        ("Model", ("architecture",)),
        ("Model Training and Evaluation", ("training",)),
        ("Prediction and Submission", ("prediction",)),
        ("Inference", ("prediction",)),
        ("Visualization", ()),
        ("Trains three different models", ()),
    ],
)
def test_classify_heading(title: str, keys: tuple[str, ...]) -> None:
    assert classify_heading(title) == keys


def test_parse_report_counts_every_row() -> None:
    report = ParseReport("fixture")
    report.add("a", parse_instruction(PLAIN))
    report.add("b", parse_instruction("Model training:\n- x"))
    report.add("c", parse_instruction("just prose"))
    report.add("d", None, "no [/INST] separator")
    assert (report.full, report.partial, report.unstructured, report.failed, report.total) == (1, 1, 1, 1, 4)
    assert report.failures == [("d", "no [/INST] separator")]
    assert report.reasons["missing preprocessing, architecture"] == 1
    assert "4 rows, 1 fully parsed" in report.summary()
