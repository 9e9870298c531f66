"""The app as an MCP server (``--mcp``), driven by a real MCP client: the ``mcp`` Python SDK over streamable HTTP
to the running app on loopback, answering with the real SmolLM2 model."""

from __future__ import annotations

import ast
import asyncio
import base64

import pytest
from chat.test_real_answers import FACTS
from conftest import launch, make_settings, stop
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.slow  # a real model's answers

TOOLS = {"upload_document", "list_documents", "search_documents", "get_document_text", "chat", "create_session",
         "list_sessions", "get_history"}


def result_json(result) -> object:
    """The value of a tool result: Gradio returns it as one text content, ``str(value)``."""
    assert not result.isError, result.content
    text = result.content[-1].text
    try:
        return ast.literal_eval(text)  # a dict or list: its Python repr
    except (ValueError, SyntaxError):
        return text  # a string, as is


async def mcp_session(url: str) -> dict:
    """List the tools, upload the facts, search them, ask about them: what each step returned."""
    out = {}
    async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        out["tools"] = {t.name: t for t in tools}
        data_url = "data:text/markdown;base64," + base64.b64encode(FACTS.encode()).decode()
        out["doc"] = result_json(await session.call_tool("upload_document",
                                                         {"file": data_url, "password": "", "cache": True,
                                                          "name": "vellmora.md"}))
        doc_id = out["doc"]["doc_id"]
        out["hits"] = result_json(await session.call_tool("search_documents",
                                                          {"query": "lighthouse keeper", "doc_ids": [doc_id], "k": 3}))
        sid = result_json(await session.call_tool("create_session", {}))
        out["answer"] = result_json(await session.call_tool("chat", {
            "session_id": sid, "message": "Who is the keeper of the lighthouse?", "doc_ids": [doc_id], "mode": "rag"}))
        out["history"] = result_json(await session.call_tool("get_history", {"session_id": sid}))
    return out


def test_an_mcp_client_lists_the_tools_searches_and_gets_a_right_answer_with_sources(tmp_path, smollm2, embedder):
    settings = make_settings(tmp_path / "data", smollm2, n_ctx=2048, max_tokens=48, turn_datetime=False,
                             n_threads=None, mcp_server=True)
    app = launch(settings, embedder)
    try:
        out = asyncio.run(mcp_session(app.url.rstrip("/") + "/gradio_api/mcp/"))
    finally:
        stop(app)
    tools = out["tools"]
    assert TOOLS <= set(tools), sorted(tools)
    chat = tools["chat"]
    assert "Ask a question about documents" in chat.description
    assert "the question" in chat.inputSchema["properties"]["message"]["description"]
    assert out["doc"]["name"] == "vellmora.md" and out["doc"]["cached"] and out["doc"]["tokens"] > 0
    assert any("Tobias Brennick" in h["text"] for h in out["hits"])
    answer = out["answer"]
    assert answer["done"] and "tobias brennick" in answer["text"].lower(), answer["text"]
    assert answer["metrics"]["mode"] == "rag" and answer["metrics"]["ttft_s"] > 0
    assert answer["sources"] and "Tobias Brennick" in answer["sources"][0]["quote"]
    assert answer["grounding"] == "partial" and answer["metrics"]["grounding"] == "partial"
    assert [m["role"] for m in out["history"]["messages"]] == ["user", "assistant"]
