"""The Python agent libraries of the real-clients tier, run by `.venv-clients/bin/python`.

    python python_clients.py LIBRARY GATEWAY_URL KEY MODEL

runs every way LIBRARY offers to talk to MODEL through the gateway (its APIs, streaming and
not) and prints one JSON object: {"<api>/<stream|nostream>": {"called": [...], "final": "...",
"error": "..."}}. Each run gives the library one tool, `save_word(word)`, asks it to save the
word (the prompt ends with `[case:NAME]`, so that the upstream's log tells the cases apart),
and records the arguments the library called the tool with and the final text it
returned. The scripted server (scripted.py) calls the tool on the first turn and answers
`SWITCHBOARD-FINAL-ANSWER` once it sees the result. instructor has no tool loop: its "tool" is
the response model (tools mode, and JSON-schema mode as `chat-json-schema`), so `called` holds
the word it extracted and `final` the model's repr.

This file imports only the libraries of tests/clients/requirements.txt (not switchboard).
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

PROMPT = "Save the word with the save_word tool, then say you are done."
Case = Callable[[list[str], str], Awaitable[str]]


def _openai_agents(base: str, key: str, model: str) -> dict[str, Case]:
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

    def build(api: str, called: list[str]) -> Agent[Any]:
        @function_tool
        def save_word(word: str) -> str:
            """Save a word."""
            called.append(word)
            return f"saved {word}"

        kind = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
        return Agent(
            name="tier",
            instructions="Use the tool.",
            model=kind(model=model, openai_client=client),
            tools=[save_word],
        )

    def case(api: str, stream: bool) -> Case:
        async def run(called: list[str], prompt: str) -> str:
            agent = build(api, called)
            if not stream:
                return str((await Runner.run(agent, prompt)).final_output)
            result = Runner.run_streamed(agent, prompt)
            async for _ in result.stream_events():
                pass
            return str(result.final_output)

        return run

    return {
        f"{api}/{'stream' if s else 'nostream'}": case(api, s)
        for api in ("chat", "responses")
        for s in (False, True)
    }


def _langchain(base: str, key: str, model: str) -> dict[str, Case]:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    def case(api: str, stream: bool) -> Case:
        async def run(called: list[str], prompt: str) -> str:
            @tool
            def save_word(word: str) -> str:
                """Save a word."""
                called.append(word)
                return f"saved {word}"

            llm: Any
            if api == "messages":
                llm = ChatAnthropic(
                    model_name=model, base_url=base, api_key=key, max_retries=0, timeout=60,
                    stop=None, streaming=stream,
                )  # fmt: skip
            else:
                llm = ChatOpenAI(
                    model=model, base_url=f"{base}/v1", api_key=key, max_retries=0,
                    use_responses_api=api == "responses", streaming=stream,
                )  # fmt: skip
            bound = llm.bind_tools([save_word])
            messages: list[BaseMessage] = [HumanMessage(prompt)]
            for _ in range(3):
                if stream:
                    reply: Any = None
                    async for chunk in bound.astream(messages):
                        reply = chunk if reply is None else reply + chunk
                else:
                    reply = await bound.ainvoke(messages)
                messages.append(reply)
                if not reply.tool_calls:
                    return str(reply.text)
                for call in reply.tool_calls:
                    out = save_word.invoke(call["args"])
                    messages.append(ToolMessage(out, tool_call_id=call["id"]))
            return "no final answer after 3 turns"

        return run

    return {
        f"{api}/{'stream' if s else 'nostream'}": case(api, s)
        for api in ("chat", "responses", "messages")
        for s in (False, True)
    }


def _pydantic_ai(base: str, key: str, model: str) -> dict[str, Case]:
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.anthropic import AnthropicProvider
    from pydantic_ai.providers.openai import OpenAIProvider

    def llm(api: str) -> Any:
        if api == "messages":
            return AnthropicModel(model, provider=AnthropicProvider(api_key=key, base_url=base))
        provider = OpenAIProvider(base_url=f"{base}/v1", api_key=key)
        kind = OpenAIResponsesModel if api == "responses" else OpenAIChatModel
        return kind(model, provider=provider)

    def case(api: str, stream: bool) -> Case:
        async def run(called: list[str], prompt: str) -> str:
            agent = Agent(llm(api), instructions="Use the tool.")

            @agent.tool_plain
            def save_word(word: str) -> str:
                """Save a word."""
                called.append(word)
                return f"saved {word}"

            if not stream:
                return str((await agent.run(prompt)).output)
            texts = [""]
            async with agent.run_stream(prompt) as result:
                async for text in result.stream_text():
                    texts.append(text)
            return texts[-1]

        return run

    return {
        f"{api}/{'stream' if s else 'nostream'}": case(api, s)
        for api in ("chat", "responses", "messages")
        for s in (False, True)
    }


def _instructor(base: str, key: str, model: str) -> dict[str, Case]:
    import instructor
    from anthropic import AsyncAnthropic
    from openai import AsyncOpenAI
    from pydantic import BaseModel

    class Word(BaseModel):
        word: str

    def case(api: str, stream: bool) -> Case:
        async def run(called: list[str], prompt: str) -> str:
            messages = [{"role": "user", "content": f"Extract the word. {prompt}"}]
            client: Any
            if api == "messages":
                client = instructor.from_anthropic(
                    AsyncAnthropic(base_url=base, api_key=key, max_retries=0),
                    mode=instructor.Mode.ANTHROPIC_TOOLS,
                )
                kwargs: dict[str, Any] = {"max_tokens": 256}
            else:
                mode = {
                    "chat": instructor.Mode.TOOLS,
                    "chat-json-schema": instructor.Mode.JSON_SCHEMA,
                    "responses": instructor.Mode.RESPONSES_TOOLS,
                }[api]
                openai = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
                client = instructor.from_openai(openai, mode=mode)
                kwargs = {}
            if stream:
                partials: list[Any] = [None]
                async for partial in client.create_partial(
                    model=model, response_model=Word, messages=messages, **kwargs
                ):
                    partials.append(partial)
                last = partials[-1]
            else:
                last = await client.create(
                    model=model, response_model=Word, messages=messages, max_retries=0, **kwargs
                )
            if last is not None and last.word:
                called.append(last.word)
            return f"SWITCHBOARD-FINAL-ANSWER {last!r}"

        return run

    return {
        f"{api}/{'stream' if s else 'nostream'}": case(api, s)
        for api in ("chat", "chat-json-schema", "responses", "messages")
        for s in (False, True)
    }


LIBRARIES = {
    "openai-agents": _openai_agents,
    "langchain": _langchain,
    "pydantic-ai": _pydantic_ai,
    "instructor": _instructor,
}


async def main(library: str, base: str, key: str, model: str) -> None:
    results: dict[str, dict[str, Any]] = {}
    for name, case in LIBRARIES[library](base, key, model).items():
        called: list[str] = []
        entry: dict[str, Any] = {"called": called, "final": None, "error": None}
        try:
            entry["final"] = await asyncio.wait_for(case(called, f"{PROMPT} [case:{name}]"), 60)
        except Exception as exc:  # the test reports it with the library's own words
            tail = traceback.format_exception(exc)[-3:]
            entry["error"] = f"{type(exc).__name__}: {exc}\n{''.join(tail)}"[-3000:]
        results[name] = entry
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
