"""Random JSON at every named endpoint (issue 44, property-based with Hypothesis): a signed-in user who is not an
admin sends any values (nulls, numbers, nested lists and objects, text with control characters, lone surrogates,
right-to-left overrides, paths out of the data dir, real ids of their own), too few and too many of them. Every
answer is a result or one sentence; never an unhandled exception (the guard's "something went wrong"), never a
traceback, never a path on the server.

The fast tier tries a few examples per endpoint; the slow tier a bounded budget; ``benchmarks/fuzz.py`` runs longer.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import launch, make_settings, stop
from fuzzing import check_answer, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawapi import call

from backend.access.auth import Users

PASSWORD = "fuzz-secret-123"
SKIP = {"upload_documents"}  # the same checks as upload_document, many files at a time: slower, nothing new


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, tiny_model, embedder):
    """The app with sign-in on, and a signed-in non-admin's cookies, a session and a document of theirs."""
    folder = tmp_path_factory.mktemp("fuzz")
    users = Users(folder / "users.json")
    users.add("mallory", PASSWORD)
    app = launch(make_settings(folder / "data", tiny_model, users_file=users.path,
                               extra_model_dirs=[tiny_model.parent]), embedder)
    with httpx.Client(base_url=app.url) as client:
        client.post("/login", data={"username": "mallory", "password": PASSWORD}).raise_for_status()
        cookies = client.cookies
    sid = call(app.url, "create_session", [], cookies).data
    endpoints = {f.api_name: len(f.inputs) for f in app.demo.fns.values()
                 if f.api_name and f.api_visibility == "public" and f.api_name not in SKIP}
    yield app, cookies, sid, endpoints
    stop(app)


def fuzz(fuzzed, examples: int) -> None:
    app, cookies, sid, endpoints = fuzzed

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(endpoints)), st.data())
    def one_call(name, draw):
        arity = endpoints[name]
        count = draw.draw(st.sampled_from([arity, arity, arity, max(arity - 1, 0), arity + 1]), label="arguments")
        data = draw.draw(st.lists(json_values([sid]), min_size=count, max_size=count), label="data")
        check_answer(call(app.url, name, data, cookies, timeout_s=60), name, data)

    one_call()
    assert call(app.url, "list_sessions", [], cookies).ok  # and the app still serves


def test_random_json_at_every_endpoint_fast(fuzzed):
    fuzz(fuzzed, 60)


@pytest.mark.slow
def test_random_json_at_every_endpoint(fuzzed):
    fuzz(fuzzed, 150)
