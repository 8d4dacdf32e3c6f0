"""The pipeline against an OpenAI-compatible server started by the test on 127.0.0.1 (scripted replies):
ranked instructions -> multi_role (researcher, then resolver) -> the llm coder's blocks in order -> integration
-> a failing run -> repair with the traceback -> solution.py; then a replay from the cache with the server gone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.generate import generate
from src.pipeline.code.llm import extract_code
from src.pipeline.journal import Journal
from tests.llm_server import FakeOpenAIServer, _free_port

OPTIONS = {
    1: "Data preprocessing:\n- drop every column\nModel architecture:\n- a constant\nModel training:\n- none",
    2: "Data preprocessing:\n- impute ages\nModel architecture:\n- gradient boosting\nModel training:\n- 5-fold CV",
    3: "Model architecture:\n- something",
}
RESOLVED = (
    "Option 2 is the best; its validation can be stronger.\n\n"
    "Data preprocessing:\n- RESOLVED_PREP: impute Age by the median, encode Sex\n"
    "Model architecture:\n- RESOLVED_ARCH: gradient boosting, 300 trees\n"
    "Model training:\n- RESOLVED_TRAIN: stratified 5-fold cross-validation"
)
BROKEN = 'import pandas as pd\ntrain = pd.read_csv("input/train.csv")\nprint(train["no_such_column"])\n'
WORKING = (
    "import pandas as pd\n"
    'train = pd.read_csv("input/train.csv")\n'
    'sample = pd.read_csv("input/sample_submission.csv")\n'
    'sample["Survived"] = train["Survived"].mode()[0]\n'
    'sample.to_csv("submission.csv", index=False)\n'
    'print("cv_score=0.6")\n'
)
BLOCKS = {
    "DATA PREPROCESSING block": "PREP = 1",
    "MODEL ARCHITECTURE block": "ARCH = 2",
    "MODEL TRAINING block": "TRAIN = 3",
    "SUBMISSION block": "SUBMIT = 4",
}


def reply(body: dict[str, Any]) -> str:
    if "prompt" in body:  # the instruction model gets the raw training-format prompt
        rank = int(body["prompt"].split("This solution has the ")[1].split(" place")[0])
        return " " + OPTIONS[rank]
    last = body["messages"][-1]["content"]
    if "You are a researcher" in last:
        return "Option 1 drops the features. Option 3 lacks preprocessing. Option 2 is the most sound."
    if "You are a resolver" in last:
        return RESOLVED
    for marker, code in BLOCKS.items():
        if marker in last:
            return f"Here it is:\n```python\n{code}\n```\nDone."
    if "Integrate these blocks" in last:
        return f"```python\n{BROKEN}```"
    if "This script failed" in last:
        return f"The column does not exist.\n```python\n{WORKING}```"
    raise AssertionError(f"unexpected request: {last[:200]}")


def _cfg(url: str, out: Path, cache_mode: str, *extra: str) -> Any:
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(
            "generate",
            overrides=[
                "task=titanic",
                f"paths.output_dir={out}",
                "llm=openai",
                f"llm.base_url={url}",
                "llm.model=test-model",
                "llm.max_retries=0",
                "llm.timeout_s=5",
                f"llm.cache.mode={cache_mode}",
                f"llm.cache.dir={out.parent / 'llm-cache'}",
                "refine=multi_role",
                "refine.guided=false",  # the paper's free-text resolver (the guided one: tests/test_multi_role.py)
                "coder=llm",
                "repair_rounds=2",
                "run_timeout_s=120",
                "search=none",  # the search has its own tests (tests/test_search.py)
                "sampling=free",  # the scripted server answers whole instructions
                "decide=model",
                "prompt=figure4",  # the paper's raw prompts (completions endpoint); chat templates go as messages
                *extra,
            ],
        )


def _user(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def test_multi_role_and_block_prompts_in_order_then_repair_then_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(reply=reply) as server:
        summary = generate(_cfg(server.url, tmp_path / "run", "read_write"))
    paths = [r["path"] for r in server.requests]
    # 3 ranked prompts, then the malformed rank 3 resampled twice (new seeds), then only chat requests
    assert paths[:5] == ["/v1/completions"] * 5 and set(paths[5:]) == {"/v1/chat/completions"}
    seeds = sorted(r["body"]["seed"] for r in server.requests[:5])
    assert seeds == [0, 0, 0, 1000, 2000]
    chats = [r["body"] for r in server.requests[5:]]
    assert len(chats) == 8  # researcher, resolver, 4 blocks, integration, 1 repair

    # multi_role: the researcher sees the three options, then the resolver continues that conversation
    researcher, resolver = chats[0], chats[1]
    assert "You are a researcher" in _user(researcher)
    assert all(f"Option {i}:\n{OPTIONS[i]}" in _user(researcher) for i in (1, 2, 3))
    assert researcher["messages"][0]["role"] == "system"
    assert resolver["messages"][: len(researcher["messages"])] == researcher["messages"]
    assert resolver["messages"][-2] == {
        "role": "assistant",
        "content": "Option 1 drops the features. Option 3 lacks preprocessing. Option 2 is the most sound.",
    }
    assert "You are a resolver" in _user(resolver)

    # blocks in order, each with its section of the resolved instruction and the code of the blocks before it
    blocks = [_user(b) for b in chats[2:6]]
    for prompt, marker in zip(blocks, BLOCKS, strict=True):
        assert marker in prompt
    assert "RESOLVED_PREP" in blocks[0].split("following this part of the instruction:")[1]
    assert "RESOLVED_ARCH" in blocks[1].split("following this part of the instruction:")[1]
    assert "RESOLVED_TRAIN" in blocks[2].split("following this part of the instruction:")[1]
    assert "(none yet)" in blocks[0]
    assert "PREP = 1" in blocks[1] and "ARCH = 2" not in blocks[1]
    assert "PREP = 1" in blocks[2] and "ARCH = 2" in blocks[2] and "TRAIN = 3" not in blocks[2]
    assert all(code in blocks[3] for code in ("PREP = 1", "ARCH = 2", "TRAIN = 3"))
    assert "./submission.csv" in blocks[3] and "sample_submission.csv" in blocks[3]
    assert "Id column: PassengerId" in blocks[0] and "Metric: accuracy (higher is better)" in blocks[0]
    assert "Survived" in blocks[0]  # the data files' columns are in the task facts
    integration = _user(chats[6])
    positions = [integration.index(code) for code in BLOCKS.values()]
    assert positions == sorted(positions) and "Integrate these blocks" in integration
    # the repair prompt holds the failed script and its traceback
    repair = _user(chats[7])
    assert "This script failed (error)" in repair and BROKEN.strip() in repair and "KeyError" in repair
    assert 'File "./solution.py", line 3' in repair and str(tmp_path) not in repair

    run = tmp_path / "run"
    assert (run / "solution.py").read_text() == WORKING
    assert "RESOLVED_PREP" in (run / "instruction.md").read_text()
    journal = Journal.load(run / "journal.json")
    assert [(n.stage, n.status) for n in journal.nodes] == [
        ("instruction", "ok"),
        ("instruction", "ok"),
        ("instruction", "fallback"),  # rank 3 never had all sections: its first attempt is kept
        ("instruction", "malformed"),
        ("instruction", "malformed"),
        ("refine", "ok"),
        ("code", "error"),
        ("repair", "ok"),
    ]
    refine = journal.by_stage("refine")[0]
    assert refine.meta["picked_option"] == 2 and journal[refine.parent].rank == 2
    code, fixed = journal.by_stage("code")[0], journal.by_stage("repair")[0]
    assert code.parent == refine.id and fixed.parent == code.id and journal.chosen == fixed.id
    assert code.execution["exc_type"] == "KeyError" and fixed.execution["status"] == "ok"
    assert [b["code"] for b in code.plan["blocks"]] == [c + "\n" for c in BLOCKS.values()]
    assert summary["status"] == "ok" and summary["llm"]["requests"] >= 12
    out = capsys.readouterr().out
    assert "=== chosen instruction" in out and "RESOLVED_ARCH" in out

    # replay: the server is gone, every answer comes from the cache, the same solution results
    summary2 = generate(_cfg(server.url, tmp_path / "replay", "replay"))
    assert (tmp_path / "replay" / "solution.py").read_text() == WORKING
    assert summary2["llm"]["requests"] == summary["llm"]["requests"] == summary2["llm"]["cache_hits"]


def test_no_server_is_one_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(PipesynthError) as err:
        generate(_cfg(url, tmp_path / "run", "off"))
    assert "127.0.0.1" in str(err.value)


def test_code_extraction() -> None:
    assert extract_code("text\n```python\nx = 1\n```\nmore ```python\ny = 22222\n```") == "y = 22222\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("```python\nunclosed = 1\n") == "unclosed = 1\n"  # cut by max_tokens
    assert extract_code("plain = 4") == "plain = 4\n"
    assert json.dumps(extract_code("```py\na=1\n```")) == json.dumps("a=1\n")
