"""Images through llama.cpp's real multimodal library (libmtmd) on a synthetic vision pair (models/make_vision.py:
a tiny text model plus an idefics3 projector, random weights): the image is encoded into the turn's own
sequence beside another batched answer, its KV is reused by a second question, and a saved prefix that ends
after the image restores from disk after a restart without encoding it again."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.inference import Engine, EngineError, Job, LoadParams, Sampling, Scheduler
from backend.inference.vision import MARKER, count_images, placeholder_ids
from backend.kvcache import KVCacheStore, entry_key, fingerprint, restore_prefix

GREEDY = Sampling(max_tokens=8, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def vision_pair(vision_models):
    return vision_models / "synthetic-vision-tiny.gguf", vision_models / "mmproj-synthetic-vision-tiny.gguf"


def load(pair, n_seq_max=2) -> Engine:
    engine = Engine()
    engine.load(pair[0], LoadParams(n_ctx=2048, n_seq_max=n_seq_max, n_threads=1))
    engine.attach_projector(pair[1])
    return engine


def picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)))


def chat(engine: Engine, question: str) -> str:
    return engine.render([{"role": "user", "content": MARKER + question}])


def run(scheduler: Scheduler, engine: Engine, text: str, images: list[np.ndarray], **job) -> Job:
    prompt = engine.projector.prompt(text, images)
    done = Job("local", prompt.tokens, GREEDY, media=prompt.spans, **job)
    scheduler.submit(done)
    assert "".join(done.stream())
    prompt.close()
    return done


def test_an_image_is_encoded_into_its_own_sequence_beside_a_text_answer_and_reused(vision_pair):
    engine = load(vision_pair)
    scheduler = Scheduler(engine)
    try:
        text_only = Job("local", engine.tokenize(engine.render([{"role": "user", "content": "Hello there"}])), GREEDY)
        scheduler.submit(text_only)
        first = run(scheduler, engine, chat(engine, "What is in the picture?"), [picture(1)])
        assert "".join(text_only.stream()) is not None and text_only.stats.completion_tokens == GREEDY.max_tokens
        stats = first.stats
        assert stats.image_tokens >= 4 and stats.image_encode_s > 0 and stats.completion_tokens == GREEDY.max_tokens
        assert stats.prompt_tokens > stats.image_tokens and stats.reused_tokens == 0

        again = run(scheduler, engine, chat(engine, "What colour is it?"), [picture(1)]).stats
        assert again.image_encode_s == 0.0, "the same image in the same sequence is not encoded again"
        assert again.reused_tokens >= again.image_tokens == stats.image_tokens

        other = run(scheduler, engine, chat(engine, "What colour is it?"), [picture(2)]).stats
        assert other.image_encode_s > 0 and other.reused_tokens < other.image_tokens, "another image is not reused"
    finally:
        scheduler.close()
        engine.unload()


def test_a_prefix_ending_after_the_image_restores_from_disk_after_a_restart(vision_pair, tmp_path):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    answers = []
    for restart in range(2):
        engine = load(vision_pair, n_seq_max=1)
        prompt = engine.projector.prompt(chat(engine, "Describe the chart."), [picture(7)])
        span = max(prompt.spans.values(), key=lambda s: s.start)
        prefix = prompt.tokens[: span.start + span.n_tokens]
        with engine.lock:
            engine.claim(0, "local")
            got = restore_prefix(engine, store, prefix, [], "local")
            milestones = {} if restart else {len(prefix): got.save}
            scheduler = Scheduler(engine)
        job = Job("local", prompt.tokens, GREEDY, media=prompt.spans,
                  prepare=lambda seq, m=milestones: m)
        scheduler.submit(job)
        answers.append("".join(job.stream()))
        scheduler.close()
        if restart == 0:
            assert job.stats.image_encode_s > 0
            assert store.entry(entry_key(fingerprint(engine), prefix, "local")) is not None
        else:
            assert got.tier == "disk", got
            assert job.stats.image_encode_s == 0.0 and job.stats.reused_tokens >= len(prefix)
        prompt.close()
        engine.unload()
    assert answers[0] == answers[1], "the restored image KV gives the same greedy answer"


def test_placeholders_never_collide_with_the_vocabulary_and_differ_per_image():
    a, b = placeholder_ids("00ff" * 16, 4), placeholder_ids("a0b1" * 16, 4)
    assert all(-2**31 <= t < 0 for t in a + b) and len(set(a)) == 4 and not set(a) & set(b)


def test_a_projector_for_another_model_is_refused_plainly(vision_pair, tiny_model, tmp_path):
    engine = Engine()
    engine.load(tiny_model, LoadParams(n_ctx=512, n_threads=1))
    try:
        bogus = tmp_path / "mmproj-bogus.gguf"
        bogus.write_bytes(b"GGUF" + b"\0" * 64)
        with pytest.raises(EngineError, match="could not be loaded as a vision projector"):
            engine.attach_projector(bogus)
        assert engine.projector is None and engine.loaded
    finally:
        engine.unload()


def test_count_images_counts_an_image_of_many_tiles_once_and_two_images_twice():
    tiles = placeholder_ids("a" * 64, 4) + [7, 8] + placeholder_ids("a" * 64, 4)  # two tiles of one image
    other = placeholder_ids("b" * 64, 3)
    assert count_images([1, 2, *tiles, 3]) == 1
    assert count_images([1, *tiles, 5, *other, *other]) == 2 and count_images([1, 2, 3]) == 0
