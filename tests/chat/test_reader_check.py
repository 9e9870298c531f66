"""The reader's yes or no on an answer's top source, on the real SmolLM2-135M: it is the model's own next-token
probability (the same as llama.cpp gives the prompt evaluated alone), it becomes the verdict's ``reader_yes``
signal, and it is asked only where the calibration weighs it (or while calibrating)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from chat.test_real_answers import FACTS
from conftest import make_settings

from backend.chat.reader_check import QUESTION, SYSTEM, ReaderCheck
from backend.grounding import calibration_for
from backend.inference import model_identity
from backend.services import build_services

pytestmark = pytest.mark.slow  # a real model

QUESTION_ASKED = "Who built the Harbor Lighthouse of Vellmora?"
ANSWER = "The Harbor Lighthouse of Vellmora was built by the engineer Odile Marchetti."


@pytest.fixture
def services(tmp_path, smollm2, embedder):
    svc = build_services(make_settings(tmp_path / "data", smollm2, n_ctx=2048, n_seq_max=2, turn_datetime=False),
                         embedder=embedder)
    assert svc.engine.loaded, svc.model_error
    yield svc
    svc.close()


def direct_p_yes(model, engine, passage: str, question: str) -> float:
    """P(yes) from llama.cpp's own evaluation of the same prompt in a fresh context (no scheduler, no batch)."""
    import llama_cpp
    import numpy as np

    prompt = engine.render([{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": QUESTION.format(passage=passage, question=question)}])
    llm = llama_cpp.Llama(str(model), n_ctx=1024, n_threads=2, verbose=False)
    try:
        llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        mass = [np.logaddexp.reduce(logits[sorted({llm.tokenize(v.encode(), add_bos=False)[0]
                                                   for v in (w, w.capitalize())})].astype(np.float64))
                for w in ("yes", "no")]
        return float(1.0 / (1.0 + math.exp(mass[1] - mass[0])))
    finally:
        llm.close()


def test_the_reader_check_is_the_models_own_yes_against_no(services, smollm2):
    check = ReaderCheck(services.engine, services.chat.scheduler)
    holds = "The Harbor Lighthouse of Vellmora was built in 1887 by the engineer Odile Marchetti."
    fitting, unrelated = check("local", QUESTION_ASKED, holds), check("local", QUESTION_ASKED, "The lamp is green.")
    assert 0 < fitting < 1 and 0 < unrelated < 1 and fitting != unrelated
    assert fitting == pytest.approx(direct_p_yes(smollm2, services.engine, holds, QUESTION_ASKED), abs=0.02)
    assert check("local", QUESTION_ASKED, holds) == pytest.approx(fitting, abs=1e-6), "the same prompt, the same P"


def test_the_verdict_asks_the_reader_only_where_the_calibration_weighs_it(services, smollm2, tmp_path):
    path = tmp_path / "vellmora.md"
    path.write_text(FACTS, encoding="utf-8")
    doc_id = services.documents.upload("local", path)[0].doc_id
    shipped = calibration_for(model_identity(smollm2))
    assert shipped is not None
    without = replace(shipped, coefficients={k: v for k, v in shipped.coefficients.items() if k != "reader_yes"})
    grounder = services.grounder
    grounder.calibration = lambda: without
    assert grounder.ask_reader == "auto"
    unasked = grounder.attribute("local", [doc_id], QUESTION_ASKED, ANSWER)
    assert unasked.signals["reader_yes"] == 0.5, "a calibration without the signal: the reader is not asked"

    weighing = replace(without, coefficients={**without.coefficients, "reader_yes": 1.0}, not_found_below=0.01)
    assert weighing.shows_not_found and weighing.weighs("reader_yes")
    grounder.calibration = lambda: weighing
    asked = grounder.attribute("local", [doc_id], QUESTION_ASKED, ANSWER)
    expected = ReaderCheck(services.engine, services.chat.scheduler)("local", QUESTION_ASKED, asked.sources[0].quote)
    assert asked.signals["reader_yes"] == pytest.approx(expected, abs=1e-6) != 0.5
    assert asked.seconds >= 0 and asked.sources[0].quote.startswith("The Harbor Lighthouse")

    grounder.ask_reader = "off"
    assert grounder.attribute("local", [doc_id], QUESTION_ASKED, ANSWER).signals["reader_yes"] == 0.5


def test_the_reader_check_without_a_model_is_not_asked(services):
    check = ReaderCheck(services.engine, services.chat.scheduler)
    services.engine.unload()
    assert check("local", QUESTION_ASKED, "Anything.") is None
