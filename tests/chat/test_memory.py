"""Long-term memory: questions indexed in LanceDB (real MiniLM), recalled into another session's
turn when asked, and forgotten with their session."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_questions_are_recalled_across_sessions_and_forgotten_with_their_session(running_app):
    client = running_app.client
    pets, other = client.predict(api_name="/create_session"), client.predict(api_name="/create_session")
    client.predict(pets, "My dog Biscuit loves raw carrots and hates the vacuum cleaner.", [], api_name="/chat")
    client.predict(pets, "Which invoice numbers were paid late in March?", [], api_name="/chat")

    plain = client.predict(other, "What food does my dog like?", [], api_name="/chat")
    assert plain["metrics"]["memories"] == 0, "memory is off unless asked for"
    recalled = client.predict(other, "What food does my dog like?", [], "auto", None, None, True, api_name="/chat")
    assert recalled["metrics"]["memories"] >= 1
    sent = client.predict(other, api_name="/get_history")["messages"][2]["sent"]
    assert "Memory (the user's earlier questions in other chats):" in sent and "Biscuit loves raw carrots" in sent
    assert "invoice" not in sent, "only related questions come back"
    assert client.predict(other, api_name="/get_history")["messages"][2]["content"] == "What food does my dog like?"

    client.predict(pets, api_name="/delete_session")
    again = client.predict(other, "What food does my dog like?", [], "auto", None, None, True, api_name="/chat")
    assert again["metrics"]["memories"] == 0, "a deleted session's messages leave the memory index"
