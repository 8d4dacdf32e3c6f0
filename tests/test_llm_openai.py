"""The OpenAI-compatible client against a real HTTP server started by the test on 127.0.0.1.

The server (stdlib http.server in a thread) implements POST /v1/chat/completions and /v1/completions with
scripted replies, can fail the first N calls with a given status and headers, and records every request.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from src.config import user_errors_exit
from src.errors import PipesynthError
from src.llm import CachedClient, ChatRequest, build_client, request_key, user
from src.llm.base import SamplingParams
from src.llm.openai_client import OpenAIClient, _retry_after_s
from tests.llm_server import FakeOpenAIServer, _free_port

REPO = Path(__file__).resolve().parent.parent


def _client(url: str, tmp_path: Path, mode: str = "off", **kw: Any) -> CachedClient:
    cfg: dict[str, Any] = {
        "_target_": "src.llm.openai_client.OpenAIClient",
        "model": "test-model",
        "base_url": url,
        "temperature": 0.7,
        "max_tokens": 64,
        "max_retries": 3,
        "timeout_s": 5,
        "backoff": {"initial_s": 0.01, "max_s": 0.05},
        "cache": {"mode": mode, "dir": str(tmp_path / "llm-cache")},
        "prices": {"test-model": {"prompt": 1.0, "completion": 2.0}},
    }
    cfg.update(kw)
    return build_client(cfg)


def test_chat_request_carries_messages_and_sampling_params(tmp_path: Path) -> None:
    with FakeOpenAIServer(reply=lambda body: "def main(): pass") as server:
        llm = _client(server.url, tmp_path)
        msgs = user("Write code for titanic", system="You are a Kaggle grandmaster.")
        [c] = llm.complete(
            [ChatRequest(messages=msgs, temperature=0.2, top_p=0.9, n=2, seed=7, stop=["END"])]
        )
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"]
    body = server.requests[0]["body"]
    assert body["model"] == "test-model"
    assert body["messages"] == [
        {"role": "system", "content": "You are a Kaggle grandmaster."},
        {"role": "user", "content": "Write code for titanic"},
    ]
    assert (body["temperature"], body["top_p"], body["n"], body["seed"], body["stop"]) == (
        0.2,
        0.9,
        2,
        7,
        ["END"],
    )
    assert body["max_tokens"] == 64  # unset in the request: the config default
    assert c.texts == ["def main(): pass", "def main(): pass"] and c.finish_reason == "stop"
    assert (c.prompt_tokens, c.completion_tokens, c.cached, c.attempts) == (9, 6, False, 1)


def test_raw_prompt_goes_to_the_completions_endpoint_unchanged(tmp_path: Path) -> None:
    prompt = "<s>[INST] Get the main information ... Data type: tabular. [/INST]"
    with FakeOpenAIServer(reply=lambda body: "1. Preprocessing") as server:
        [c] = _client(server.url, tmp_path).complete([ChatRequest(prompt=prompt)])
    assert server.requests[0]["path"] == "/v1/completions"
    body = server.requests[0]["body"]
    assert body["prompt"] == prompt and body["temperature"] == 0.7 and body["seed"] == 0
    assert c.text == "1. Preprocessing" and c.finish_reason == "length"


def test_batch_answers_come_back_in_request_order(tmp_path: Path) -> None:
    def echo(body: dict) -> str:
        time.sleep(0.05 * (5 - int(body["messages"][0]["content"])))  # later requests answer first
        return "answer " + body["messages"][0]["content"]

    with FakeOpenAIServer(reply=echo) as server:
        out = _client(server.url, tmp_path, concurrency=3).complete(
            [ChatRequest(messages=user(str(i))) for i in range(5)]
        )
    assert [c.text for c in out] == [f"answer {i}" for i in range(5)]
    assert len(server.requests) == 5


def test_retries_on_500_then_succeeds(tmp_path: Path) -> None:
    with FakeOpenAIServer(reply=lambda b: "ok", failures=[(500, {}), (502, {})]) as server:
        llm = _client(server.url, tmp_path)
        [c] = llm.complete([ChatRequest(messages=user("hi"))])
    assert [r["status"] for r in server.requests] == [500, 502, 200]
    assert c.text == "ok" and c.attempts == 3
    assert llm.usage.retries == 2 and llm.usage.calls == 1


def test_timeouts_are_retried(tmp_path: Path) -> None:
    def slow_first(body: dict) -> str:
        if len(server.requests) == 1:
            time.sleep(1.5)  # longer than timeout_s: the client gives up on this attempt
        return "in time"

    with FakeOpenAIServer(reply=slow_first) as server:
        [c] = _client(server.url, tmp_path, timeout_s=0.5).complete([ChatRequest(messages=user("hi"))])
    assert c.text == "in time" and c.attempts == 2 and len(server.requests) == 2


@pytest.mark.parametrize("header", [("retry-after-ms", "300"), ("retry-after", "0.3")])
def test_429_honours_retry_after(tmp_path: Path, header: tuple[str, str]) -> None:
    with FakeOpenAIServer(reply=lambda b: "ok", failures=[(429, dict([header]))]) as server:
        [c] = _client(server.url, tmp_path).complete([ChatRequest(messages=user("hi"))])
    assert [r["status"] for r in server.requests] == [429, 200]
    waited = server.requests[1]["time"] - server.requests[0]["time"]
    # the configured backoff is 0.01 s: only the server's header explains a 0.3 s wait
    assert 0.29 <= waited < 2.0, waited
    assert c.attempts == 2


def test_retry_after_parsing() -> None:
    assert _retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert _retry_after_s({"retry-after": "2"}) == 2.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (_retry_after_s({"retry-after": future}) or 0) <= 31
    assert _retry_after_s({}) is None and _retry_after_s({"retry-after": "soon"}) is None


def test_gives_up_after_max_retries_with_one_clear_error(tmp_path: Path) -> None:
    with FakeOpenAIServer(failures=[(503, {})] * 10) as server:
        with pytest.raises(PipesynthError) as err:
            _client(server.url, tmp_path, max_retries=2).complete([ChatRequest(messages=user("hi"))])
    assert len(server.requests) == 3
    msg = str(err.value)
    assert server.url in msg and "HTTP 503" in msg and "3 attempts" in msg and "scripted failure 503" in msg


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    with FakeOpenAIServer(failures=[(404, {})]) as server:
        with pytest.raises(PipesynthError, match="HTTP 404") as err:
            _client(server.url, tmp_path).complete([ChatRequest(messages=user("hi"))])
    assert len(server.requests) == 1
    assert "llm.model='test-model'" in str(err.value)


def test_unreachable_server_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"

    @user_errors_exit
    def entry() -> None:
        _client(url, tmp_path).complete([ChatRequest(messages=user("hi"))])

    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert time.perf_counter() - start < 5  # connection refused is not retried with backoff
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"cannot reach the LLM server at {url}" in err[0]
    assert "llm.base_url" in err[0] and "llm=local" in err[0]


def test_replay_hits_the_cache_with_the_server_stopped(tmp_path: Path) -> None:
    requests = [ChatRequest(messages=user(f"task {i}"), tag="instruct") for i in range(3)]
    with FakeOpenAIServer(reply=lambda b: "instruction for " + b["messages"][0]["content"]) as server:
        live = _client(server.url, tmp_path, mode="read_write").complete(requests)
    assert len(server.requests) == 3
    # the server is gone: replay mode answers everything from disk and never connects
    replay = _client(server.url, tmp_path, mode="replay")
    again = replay.complete(requests)
    assert (
        [c.text for c in again] == [c.text for c in live] == [f"instruction for task {i}" for i in range(3)]
    )
    assert all(c.cached for c in again)
    assert replay.usage.cache_hits == 3 and replay.usage.calls == 0 and replay.usage.cost_usd == 0
    assert replay.usage.saved_usd > 0
    # read_write also serves hits without a server
    assert _client(server.url, tmp_path, mode="read_write").complete(requests[:1])[0].cached


def test_replay_miss_names_the_request_and_the_fix(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        _client(server.url, tmp_path, mode="read_write").complete([ChatRequest(messages=user("cached one"))])
        replay = _client(server.url, tmp_path, mode="replay")
        with pytest.raises(PipesynthError) as err:
            replay.complete(
                [
                    ChatRequest(messages=user("cached one")),
                    ChatRequest(messages=user("never asked"), tag="refine"),
                ]
            )
    assert len(server.requests) == 1  # replay never called the server
    msg = str(err.value)
    assert "replay mode: 1 of 2" in msg and "never asked" in msg and "[refine]" in msg
    assert "llm.cache.mode=read_write" in msg and "llm.cache.dir" in msg


def test_token_and_cost_counting(tmp_path: Path) -> None:
    calls_log = tmp_path / "run" / "llm_calls.jsonl"
    with FakeOpenAIServer(reply=lambda b: "one two three") as server:
        llm = _client(server.url, tmp_path, mode="read_write")
        llm.calls_log = calls_log
        llm.complete(
            [ChatRequest(messages=user("a b c d"), tag="code"), ChatRequest(prompt="x y", tag="instr")]
        )
        llm.complete([ChatRequest(messages=user("a b c d"), tag="code")])  # a cache hit
    u = llm.usage
    assert (u.requests, u.calls, u.cache_hits) == (3, 2, 1)
    assert (u.prompt_tokens, u.completion_tokens) == (4 + 2, 3 + 3)
    assert u.cost_usd == pytest.approx((6 * 1.0 + 6 * 2.0) / 1e6)
    assert u.saved_usd == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)
    assert u.by_tag == {"code": 2, "instr": 1}
    assert llm.usage_dict()["model"] == "test-model"
    logged = [json.loads(line) for line in calls_log.read_text().splitlines()]
    assert [(r["tag"], r["cached"], r["prompt_tokens"]) for r in logged] == [
        ("code", False, 4),
        ("instr", False, 2),
        ("code", True, 4),
    ]
    assert logged[0]["key"] == logged[2]["key"] != logged[1]["key"]


def test_cache_keys_differ_by_model_params_and_prompt() -> None:
    base = ChatRequest(messages=user("hello")).resolved(SamplingParams())
    keys = {
        request_key("m1", base),
        request_key("m2", base),
        request_key("m1", ChatRequest(messages=user("hello"), temperature=0.2).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), seed=1).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), top_p=0.5).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), max_tokens=9).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), n=3).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), stop=["x"]).resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello!")).resolved(SamplingParams())),
        request_key("m1", ChatRequest(prompt="hello").resolved(SamplingParams())),
        request_key("m1", ChatRequest(messages=user("hello"), prefix="A:").resolved(SamplingParams())),
    }
    assert len(keys) == 11
    # the stage tag is not part of the key; an explicit default equals an unset one
    same = ChatRequest(messages=user("hello"), tag="other", temperature=0.7).resolved(SamplingParams())
    assert request_key("m1", same) == request_key("m1", base)


def test_concurrent_writers_leave_whole_entries(tmp_path: Path) -> None:
    from src.llm.scripted import ScriptedClient

    cache_dir = tmp_path / "shared-cache"
    clients = [CachedClient(ScriptedClient(default_reply=f"writer {i}"), dir=cache_dir) for i in range(8)]
    request = ChatRequest(messages=user("same question"))
    barrier = threading.Barrier(len(clients))

    def work(client: CachedClient) -> str:
        barrier.wait()
        return client.complete([request])[0].text

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = list(cache_dir.rglob("*"))
    assert [f.suffix for f in files if f.is_file()] == [".json"]  # no temp files left behind
    text = CachedClient(ScriptedClient(), mode="replay", dir=cache_dir).complete([request])[0].text
    assert text in {f"writer {i}" for i in range(8)}


def test_openai_config_composes_and_builds(tmp_path: Path) -> None:
    primary = tmp_path / "conf"
    primary.mkdir()
    (primary / "llm_test.yaml").write_text(
        "defaults:\n  - _self_\n  - paths: default\n  - llm: openai\n"
        f"hydra:\n  searchpath:\n    - file://{REPO / 'conf'}\n"
    )
    with initialize_config_dir(str(primary), version_base="1.3"):
        cfg = compose(
            "llm_test",
            overrides=[
                f"paths.cache_dir={tmp_path / 'cache'}",
                "paths.output_dir=unused",
                "llm.base_url=http://127.0.0.1:9/v1",
                "llm.model=gpt-4o-mini-2024-07-18",
            ],
        )
    llm = build_client(cfg.llm)
    assert isinstance(llm.client, OpenAIClient) and llm.client._sdk.max_retries == 0
    assert llm.mode == "read_write" and llm.cache is not None and llm.cache.dir == tmp_path / "cache" / "llm"
    assert llm.defaults.temperature == 0.7
    # the longest listed prefix prices a dated model name
    assert llm.prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)


def test_missing_key_for_the_openai_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(PipesynthError, match=r"OPENAI_API_KEY is not set.*llm=local"):
        OpenAIClient(model="gpt-4o", base_url="https://api.openai.com/v1")
    # a local server needs no key
    assert OpenAIClient(model="m", base_url="http://127.0.0.1:1/v1").base_url == "http://127.0.0.1:1/v1"


def test_answer_prefix_continues_a_final_assistant_message(tmp_path: Path) -> None:
    with FakeOpenAIServer(reply=lambda body: " scale the numeric columns") as server:
        llm = _client(server.url, tmp_path)
        [chat] = llm.complete([ChatRequest(messages=user("Plan it"), prefix="Data preprocessing:")])
        [raw] = llm.complete([ChatRequest(prompt="[INST] plan [/INST]", prefix="Data preprocessing:")])
    chat_body, raw_body = (r["body"] for r in server.requests)
    assert chat_body["messages"][-1] == {"role": "assistant", "content": "Data preprocessing:"}
    assert chat_body["continue_final_message"] is True and chat_body["add_generation_prompt"] is False
    assert raw_body["prompt"] == "[INST] plan [/INST]Data preprocessing:"
    assert chat.text == raw.text == " scale the numeric columns"  # the continuation only


def test_answer_prefix_on_the_openai_api_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = OpenAIClient(model="gpt-4o-mini", base_url="https://api.openai.com/v1")
    with pytest.raises(PipesynthError, match="cannot continue an answer prefix"):
        client.complete([ChatRequest(messages=user("Plan it"), prefix="Data preprocessing:")])
