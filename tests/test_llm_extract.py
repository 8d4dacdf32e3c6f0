"""The paper's Figure 3 extraction: prompt as data, plugged into the Code4ML loader, built from config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.corpus.code4ml import Code4MLSource, InstructionExtractor
from src.corpus.extract_llm import ExtractionPrompt, LLMInstructionExtractor, load_extraction_prompt
from src.errors import PipesynthError
from src.llm.scripted import ScriptedClient

REPO = Path(__file__).resolve().parent.parent
FIGURE3 = (
    "Get the main information about data preprocessing, model architecture and model training from the code. "
    "Code: "
)
ANSWER = (
    "Data preprocessing:\n- fill missing Age with the median\n"
    "Model architecture:\n- RandomForestClassifier(n_estimators=100)\n"
    "Model training:\n- fit on all rows"
)
CODE = (
    "import pandas as pd\nfrom sklearn.ensemble import RandomForestClassifier\nm = RandomForestClassifier()\n"
)


def test_figure3_prompt_is_data_and_sent_verbatim() -> None:
    prompt = load_extraction_prompt("extract_figure3")
    assert prompt.render(CODE) == FIGURE3 + CODE.strip()
    llm = ScriptedClient(replies=[ANSWER])
    extractor = LLMInstructionExtractor(llm, prompt="extract_figure3", max_tokens=300)
    assert isinstance(extractor, InstructionExtractor)
    assert extractor.extract(CODE) == ANSWER
    [request] = llm.requests
    assert request.messages == ({"role": "user", "content": FIGURE3 + CODE.strip()},)
    assert (request.temperature, request.max_tokens, request.tag) == (0.0, 300, "extract")


def test_long_code_keeps_head_and_tail() -> None:
    prompt = ExtractionPrompt(template="Code: {code}", max_code_chars=200)
    code = "import lightgbm\n" + "\n".join(f"x{i} = {i}" for i in range(200)) + "\nsubmission.to_csv('s.csv')"
    fitted = prompt.fit_code(code)
    assert len(fitted) < 260 and fitted.startswith("import lightgbm") and fitted.endswith("to_csv('s.csv')")
    assert "characters cut" in fitted
    with pytest.raises(PipesynthError, match="placeholder"):
        ExtractionPrompt(template="no placeholder here")


def test_empty_answer_is_a_per_kernel_failure() -> None:
    extractor = LLMInstructionExtractor(ScriptedClient(replies=["   "]))
    with pytest.raises(ValueError, match="empty instruction"):
        extractor.extract(CODE)


def test_plugs_into_the_code4ml_loader_from_config(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "comp_name": ["titanic"],
            "description": ["Predict survival."],
            "data_type": ["tabular data"],
            "metric": ["categorization_accuracy"],
        }
    ).to_csv(tmp_path / "competitions_meta.csv", index=False)
    pd.DataFrame({"kernel_id": ["k1", "k2"], "comp_name": ["titanic"] * 2, "score": [0.8, 0.7]}).to_csv(
        tmp_path / "kernels_meta.csv", index=False
    )
    pd.DataFrame(
        {
            "kernel_id": ["k1", "k1", "k2"],
            "code_block_id": [0, 1, 0],
            "code_block": ["import pandas as pd", "model.fit(X, y)", "print(1)"],
        }
    ).to_csv(tmp_path / "code_blocks.csv", index=False)
    cfg = OmegaConf.create(
        {
            "paths": {"cache_dir": str(tmp_path / "cache")},
            "llm": {
                "_target_": "src.llm.scripted.ScriptedClient",
                "replies": [ANSWER, "free text, no sections"],
                "cache": {"mode": "read_write", "dir": "${paths.cache_dir}/llm"},
            },
            "data": {
                "source": {
                    "_target_": "src.corpus.code4ml.Code4MLSource",
                    "root": str(tmp_path),
                    "extractor": {
                        "_target_": "src.corpus.extract_llm.LLMInstructionExtractor",
                        "_recursive_": False,
                        "llm": "${llm}",
                        "prompt": "extract_figure3",
                    },
                }
            },
        }
    )
    source = instantiate(cfg.data.source)
    assert isinstance(source, Code4MLSource)
    ds, report = source.load()
    assert report.full == 1 and report.unstructured == 1
    row = {r["kernel_id"]: r for r in ds}["k1"]
    assert row["instruction"] == ANSWER and row["rank"] == 1
    requests = source.extractor.llm.client.requests
    assert requests[0].messages[0]["content"] == FIGURE3 + "import pandas as pd\n\n# %%\nmodel.fit(X, y)"
    assert source.extractor.usage["requests"] == 2
    # the answers are cached: a second build replays them without the model
    cfg.llm.cache.mode = "replay"
    again, _ = instantiate(cfg.data.source).load()
    assert again["instruction"] == ds["instruction"]
