"""Analytics points and totals from real answers (tiny synthetic model, real Redis, real retrieval)."""

from __future__ import annotations

import time

import pytest
from conftest import TESTDATA, make_settings

from backend.chat.analytics import answer_points, since_for, totals
from backend.services import build_services


@pytest.mark.slow
def test_points_follow_the_saved_answers_and_filter_by_chat_time_and_owner(tmp_path, tiny_model, embedder):
    services = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    try:
        doc, _ = services.documents.upload("local", TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")
        services.primer.cache_documents("local", [doc.doc_id])
        first, second = services.sessions.create("local"), services.sessions.create("local")
        for sid, question, mode in ((first, "What is it about?", "cag"), (first, "And the title?", "cag"),
                                    (second, "Any tables?", "rag")):
            list(services.chat.stream_turn("local", sid, question, [doc.doc_id], mode=mode))
        services.sessions.create("other")

        points = answer_points(services.sessions, "local")
        assert [p.mode for p in points] == ["cag", "cag", "rag"]
        saved = [m["metrics"] for s in (first, second) for m in services.sessions.get("local", s).messages
                 if m["role"] == "assistant"]
        assert [p.ttft_s for p in points] == [m["ttft_s"] for m in saved]
        assert points[0].cache_tier in ("live", "ram", "disk") and points[0].reused_tokens > 0
        assert points[2].retrieval_s > 0 and points[0].retrieval_s == 0
        assert [p.mode for p in answer_points(services.sessions, "local", second)] == ["rag"]
        assert answer_points(services.sessions, "local", since=time.time() + 60) == []
        assert len(answer_points(services.sessions, "local", since=since_for("Last hour"))) == 3
        assert answer_points(services.sessions, "other") == []

        t = totals(points)
        assert t["answers"] == 3 and t["prompt_tokens"] == sum(m["prompt_tokens"] for m in saved)
        assert t["reused_tokens"] == sum(m["reused_tokens"] for m in saved) and 0 < t["reuse_ratio"] < 1
        hits = sum(m["cache_tier"] in ("live", "ram", "disk") for m in saved)
        assert t["cache_hit_rate"] == hits / 3
        assert totals([])["answers"] == 0 and totals([])["median_ttft_s"] is None
    finally:
        services.close()
