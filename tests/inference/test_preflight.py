"""Preflight: a model file that crashes llama.cpp is caught in a child process, refused with one
sentence, recorded in the run log, and the app keeps serving with the model it had."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import launch, make_settings, stop
from gradio_client.exceptions import AppError

from backend.inference import LoadParams, Preflight


@pytest.mark.slow
def test_a_model_that_crashes_llama_cpp_is_refused_and_the_app_keeps_serving(tmp_path, tiny_model, crashing_model,
                                                                              embedder):
    app = launch(make_settings(tmp_path / "data", tiny_model, extra_model_dirs=[crashing_model.parent]), embedder)
    try:
        before = app.client.predict(api_name="/model_status")
        assert before["model"] == tiny_model.name and before["preflight"].startswith("passed")
        with pytest.raises(AppError) as err:
            app.client.predict(str(crashing_model), api_name="/load_model")
        message = str(err.value)
        assert "crashed llama.cpp while tokenizing" in message and "SIGABRT" in message, message
        assert "keeps serving" in message
        after = app.client.predict(api_name="/model_status")
        assert after["loaded"] and after["model"] == tiny_model.name
        sid = app.client.predict(api_name="/create_session")
        answers = list(app.client.submit(sid, "Still there?", [], api_name="/chat"))
        assert answers[-1]["done"] and answers[-1]["metrics"]["completion_tokens"] > 0
        run = app.client.predict("", "ERROR", 400, api_name="/get_logs")
        text = "\n".join(run["lines"] if isinstance(run, dict) else run)
        assert "preflight" in text and "crashing.gguf" in text
        assert "Fatal Python error: Aborted" in text  # faulthandler's stack from the child
    finally:
        stop(app)


def test_a_preflight_result_is_remembered_across_restarts(tmp_path, tiny_model, crashing_model):
    folder = tmp_path / "preflight"
    Preflight._memo.clear()
    params = LoadParams(n_ctx=512)
    first = Preflight(folder).check(crashing_model, params)
    assert first.crashed and not first.remembered and first.seconds > 0
    Preflight._memo.clear()  # a new process: only the folder remembers
    start = time.perf_counter()
    again = Preflight(folder).check(crashing_model, params)
    assert again.crashed and again.remembered and time.perf_counter() - start < 1.0
    assert again.message == first.message
    ok = Preflight(folder).check(tiny_model, params)
    assert not ok.crashed and ok.use_extra_bufts and ok.message == ""


def test_smollm2_q4_1_passes_with_or_without_extra_buffer_types(tmp_path, smollm2):
    """On AMX-INT8 CPUs llama.cpp's AMX buffer type has segfaulted on SmolLM2 Q4_1; there the preflight
    loads it with use_extra_bufts off. Either way the unmodified file must pass."""
    Preflight._memo.clear()
    result = Preflight(tmp_path / "preflight").check(smollm2, LoadParams(n_ctx=512))
    assert not result.crashed, result.message
    if result.use_extra_bufts:
        assert result.message == ""
    else:
        assert "use_extra_bufts off" in result.message and "amx_int8" in Path("/proc/cpuinfo").read_text()


def test_a_vision_model_preflights_its_projector_and_a_broken_one_leaves_it_text_only(tmp_path, vision_models,
                                                                                     embedder):
    import dataclasses
    import shutil
    import sys

    from conftest import ROOT

    from backend.services import build_services

    sys.path.insert(0, str(ROOT / "models"))
    from make_vision import VISION_PRESETS, write_mmproj

    model = vision_models / "synthetic-vision-tiny.gguf"
    good = Preflight(tmp_path / "checked").check(model, LoadParams(n_ctx=512, n_threads=1))
    assert not good.crashed and good.vision and good.message == ""

    broken = tmp_path / "broken"  # the same model beside a projector whose embeddings are 48 wide, not 64
    broken.mkdir()
    shutil.copy(model, broken / model.name)
    write_mmproj(broken / "mmproj-synthetic-vision-tiny.gguf", dataclasses.replace(VISION_PRESETS["tiny"], out_embd=48))
    result = Preflight(tmp_path / "checked").check(broken / model.name, LoadParams(n_ctx=512, n_threads=1))
    assert not result.crashed and not result.vision
    assert "loading the vision projector" in result.message and "for text only" in result.message

    settings = make_settings(tmp_path / "data", broken / model.name, models_dir=broken)
    services = build_services(settings, embedder=embedder)
    try:  # the model serves text; the projector is not attached and the status says why
        assert services.engine.loaded and services.engine.projector is None
        assert "for text only" in services.engine.status().get("preflight", "")
    finally:
        services.close()
