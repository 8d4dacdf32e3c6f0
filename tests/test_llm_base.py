"""The request/completion types, price table, scripted client and the cache wrapper's bookkeeping."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.errors import PipesynthError
from src.llm import CachedClient, ChatRequest, Completion, LLMClient, PriceTable, SamplingParams, ask, user
from src.llm.scripted import ScriptedClient


def test_request_validation() -> None:
    with pytest.raises(PipesynthError, match="exactly one"):
        ChatRequest()
    with pytest.raises(PipesynthError, match="exactly one"):
        ChatRequest(prompt="a", messages=user("b"))
    with pytest.raises(PipesynthError, match="bad chat message"):
        ChatRequest(messages=({"role": "robot", "content": "x"},))
    with pytest.raises(PipesynthError, match="temperature"):
        ChatRequest(prompt="a", temperature=-1).resolved(SamplingParams())
    r = ChatRequest(prompt="a", stop="END", tag="t").resolved(SamplingParams(temperature=0.3, seed=4))
    assert (r.temperature, r.seed, r.stop, r.n, r.kind) == (0.3, 4, ("END",), 1, "text")


def test_completion_round_trips_through_json_form() -> None:
    from src.llm import Choice

    c = Completion(
        choices=[Choice("a"), Choice("b", "length")], model="m", prompt_tokens=3, completion_tokens=2
    )
    back = Completion.from_dict(c.to_dict())
    assert back == c and back.texts == ["a", "b"] and back.finish_reason == "stop"


def test_price_table_longest_prefix_and_unknown_models(caplog: pytest.LogCaptureFixture) -> None:
    prices = PriceTable(
        {"gpt-4": {"prompt": 30, "completion": 60}, "gpt-4o": {"prompt": 2.5, "completion": 10}}
    )
    assert prices.cost("gpt-4o-2024-08-06", 1_000_000, 0) == 2.5
    assert prices.cost("gpt-4-0613", 0, 1_000_000) == 60
    assert prices.cost("mystery", 10, 10) == 0.0 and prices.cost("mystery", 10, 10) == 0.0
    assert sum("no price for model 'mystery'" in r.message for r in caplog.records) == 1  # warned once


def test_scripted_client_and_ask() -> None:
    llm = ScriptedClient(replies=["first"], reply_fn=lambda r: r.prompt.upper() if r.prompt else "chat")
    assert isinstance(llm, LLMClient)
    assert ask(llm, "hello").text == "first"
    assert ask(llm, "hello", raw=True).text == "HELLO"
    assert ask(llm, user("x", system="s"), n=2).texts == ["chat", "chat"]
    assert [r.kind for r in llm.requests] == ["chat", "text", "chat"]
    empty = ScriptedClient()
    with pytest.raises(PipesynthError, match="ran out of replies"):
        ask(empty, "anything")


def test_cache_mode_checks(tmp_path: Path) -> None:
    with pytest.raises(PipesynthError, match="unknown llm.cache.mode"):
        CachedClient(ScriptedClient(), mode="sometimes", dir=tmp_path)
    with pytest.raises(PipesynthError, match="llm.cache.dir is not set"):
        CachedClient(ScriptedClient(), mode="replay")
    off = CachedClient(ScriptedClient(default_reply="x"), mode="off", dir=tmp_path)
    off.complete([ChatRequest(prompt="p")])
    off.complete([ChatRequest(prompt="p")])
    assert off.usage.calls == 2 and off.usage.cache_hits == 0 and not list(tmp_path.iterdir())


def test_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    llm = CachedClient(ScriptedClient(replies=["one", "two"]), dir=tmp_path)
    assert llm.complete([ChatRequest(prompt="p")])[0].text == "one"
    [entry] = list(tmp_path.rglob("*.json"))
    entry.write_text("{not json")
    assert llm.complete([ChatRequest(prompt="p")])[0].text == "two"  # asked again and rewritten
    assert llm.complete([ChatRequest(prompt="p")])[0].cached
