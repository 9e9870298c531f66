"""KV-cache priming on the real tiny GGUF: identical greedy output, safe files, invalidation."""

from __future__ import annotations

import itertools
import json

import llama_cpp
import pytest
from conftest import TESTDATA

from backend.chat import build_prompt, frame
from backend.documents import DocText
from backend.inference import Engine, LoadParams, Sampling, StreamStats
from backend.kvcache import KVCacheStore, ensure_prefix, entry_key, fingerprint

GREEDY = Sampling(max_tokens=24, temperature=0.0)


@pytest.fixture
def doc_text() -> DocText:
    text = (TESTDATA / "md_txt" / "pandoc_testsuite.md").read_text(encoding="utf-8")[:6000]
    return DocText("doc1", "pandoc_testsuite.md", text)


def load(model, n_ctx=8192) -> Engine:
    engine = Engine()
    engine.load(model, LoadParams(n_ctx=n_ctx))
    return engine


def answer_tokens(engine: Engine, prompt_tokens: list[int]) -> list[int]:
    """Generate greedily and return the generated token ids (as evaluated into the context)."""
    stats = StreamStats()
    text = "".join(engine.stream(prompt_tokens, GREEDY, stats))
    assert stats.completion_tokens == GREEDY.max_tokens and text
    return engine.context_tokens()[len(prompt_tokens):]


def make_prompt(engine, doc_text):
    return build_prompt(engine, frame("Answer from the document.", [doc_text]), [], "What does it test?",
                        history_budget_tokens=256, max_tokens=GREEDY.max_tokens)


def test_restored_prefix_gives_identical_greedy_output(tmp_path, tiny_model, doc_text):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    cold = load(tiny_model)
    prompt = make_prompt(cold, doc_text)
    with cold.lock:
        first = ensure_prefix(cold, store, prompt.prefix_tokens, ["doc1"], "local")
        cold_answer = answer_tokens(cold, prompt.tokens)
    assert first.tier == "miss" and first.n_tokens == len(prompt.prefix_tokens) > 1000
    cold.unload()

    warm = load(tiny_model)  # a new process-equivalent: empty context
    with warm.lock:
        restored = ensure_prefix(warm, store, prompt.prefix_tokens, ["doc1"], "local")
        warm_answer = answer_tokens(warm, prompt.tokens)
    assert restored.tier == "disk" and restored.restore_s > 0
    assert warm_answer == cold_answer
    warm.unload()

    # and the same as plain llama-cpp-python evaluating the whole prompt in one go
    llm = llama_cpp.Llama(model_path=str(tiny_model), n_ctx=8192, n_batch=512, n_ubatch=512, verbose=False)
    plain = []
    for token in llm.generate(prompt.tokens, temp=0.0, top_k=20, top_p=0.8, min_p=0.0, repeat_penalty=1.0):
        plain.append(token)
        if len(plain) == GREEDY.max_tokens:
            break
    llm.close()
    assert plain[:-1] == warm_answer, "the last sampled token is never evaluated into the context"


def test_files_are_raw_state_plus_json_sidecar(tmp_path, tiny_model, doc_text):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    engine = load(tiny_model)
    prompt = make_prompt(engine, doc_text)
    with engine.lock:
        ensure_prefix(engine, store, prompt.prefix_tokens, ["doc1"], "local")
    files = sorted(p.name for p in (tmp_path / "kv").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".kv"), files
    sidecar = json.loads((tmp_path / "kv" / files[0]).read_text())
    payload = (tmp_path / "kv" / files[1]).read_bytes()
    assert sidecar["state_bytes"] == len(payload) and sidecar["n_tokens"] == len(prompt.prefix_tokens)
    assert sidecar["tokens"] == prompt.prefix_tokens and sidecar["doc_ids"] == ["doc1"]
    assert set(sidecar["fingerprint"]) >= {"model_sha256", "n_ctx", "type_k", "type_v", "flash_attn", "llama_cpp_python"}
    assert not payload.startswith(b"\x80"), "no pickle protocol header"
    # the payload holds KV cells, not the logits matrix (n_vocab floats per token would be far larger)
    assert len(payload) < len(prompt.prefix_tokens) * engine.llm.n_vocab() * 4


@pytest.mark.parametrize("damage", ["flip_payload_byte", "truncate_payload", "garble_sidecar", "drop_payload"])
def test_damaged_entry_is_discarded_and_recomputed(tmp_path, tiny_model, doc_text, damage):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    engine = load(tiny_model)
    prompt = make_prompt(engine, doc_text)
    with engine.lock:
        ensure_prefix(engine, store, prompt.prefix_tokens, ["doc1"], "local")
        good_answer = answer_tokens(engine, prompt.tokens)
    key = entry_key(fingerprint(engine), prompt.prefix_tokens, "local")
    kv, sidecar = tmp_path / "kv" / f"{key}.kv", tmp_path / "kv" / f"{key}.json"
    data = bytearray(kv.read_bytes())
    if damage == "flip_payload_byte":
        data[len(data) // 2] ^= 0xFF
        kv.write_bytes(bytes(data))
    elif damage == "truncate_payload":
        kv.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "garble_sidecar":
        sidecar.write_text("{not json")
    else:
        kv.unlink()

    fresh = load(tiny_model)
    with fresh.lock:
        result = ensure_prefix(fresh, store, prompt.prefix_tokens, ["doc1"], "local")
        assert result.tier == "miss", "a damaged entry is never loaded"
        assert answer_tokens(fresh, prompt.tokens) == good_answer
    assert store.load(key, fingerprint(fresh), prompt.prefix_tokens) is not None, "recomputed entry is valid"


def test_fingerprint_mismatch_is_never_loaded(tmp_path, tiny_model, doc_text):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    engine = load(tiny_model, n_ctx=8192)
    prompt = make_prompt(engine, doc_text)
    with engine.lock:
        ensure_prefix(engine, store, prompt.prefix_tokens, ["doc1"], "local")
    fp = fingerprint(engine)
    key = entry_key(fp, prompt.prefix_tokens, "local")
    other = dict(fp, n_ctx=4096)
    assert store.load(key, other, prompt.prefix_tokens) is None
    assert not list((tmp_path / "kv").glob(f"{key}.*")), "the mismatching entry is discarded"

    bigger = load(tiny_model, n_ctx=12288)  # a different context size gets its own entry
    with bigger.lock:
        assert ensure_prefix(bigger, store, prompt.prefix_tokens, ["doc1"], "local").tier == "miss"


def test_disk_budget_evicts_least_recently_used(tmp_path, tiny_model, doc_text):
    engine = load(tiny_model)
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    prompts = [build_prompt(engine, frame(f"Instructions {i}.", [doc_text]), [], "Q?",
                            history_budget_tokens=0, max_tokens=8) for i in range(3)]
    with engine.lock:
        sizes = [ensure_prefix(engine, store, p.prefix_tokens, [f"d{i}"], "local").state_bytes
                 for i, p in enumerate(prompts)]
    store.budget_bytes = sizes[1] + sizes[2]
    evicted = store.evict()
    assert len(evicted) == 1 and [e.doc_ids for e in store.entries()] == [("d2",), ("d1",)]


def test_ram_tier_restore_is_identical_and_skips_the_file(tmp_path, tiny_model, doc_text):
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30, ram_budget_bytes=1 << 30)
    engine = load(tiny_model)
    prompt = make_prompt(engine, doc_text)
    with engine.lock:
        assert ensure_prefix(engine, store, prompt.prefix_tokens, ["doc1"], "local").tier == "miss"
        cold_answer = answer_tokens(engine, prompt.tokens)
        key = entry_key(fingerprint(engine), prompt.prefix_tokens, "local")
        assert key in store.ram  # priming keeps the state in RAM too
        (tmp_path / "kv" / f"{key}.kv").write_bytes(b"damaged on disk, never read on a RAM hit")
        engine.clear_context()
        restored = ensure_prefix(engine, store, prompt.prefix_tokens, ["doc1"], "local")
        assert restored.tier == "ram" and restored.restore_s > 0
        assert answer_tokens(engine, prompt.tokens) == cold_answer
    # a fresh store (a restart) has an empty RAM tier: the damaged file is caught and recomputed
    again = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30, ram_budget_bytes=1 << 30)
    fresh = load(tiny_model)
    with fresh.lock:
        assert ensure_prefix(fresh, again, prompt.prefix_tokens, ["doc1"], "local").tier == "miss"
        assert answer_tokens(fresh, prompt.tokens) == cold_answer
        fresh.clear_context()
        again.ram.delete(key)
        assert ensure_prefix(fresh, again, prompt.prefix_tokens, ["doc1"], "local").tier == "disk"
        assert key in again.ram  # a disk hit is promoted to RAM


def test_both_tiers_stay_within_budget(tmp_path, tiny_model, doc_text):
    engine = load(tiny_model)
    prompts = [build_prompt(engine, frame(f"Instructions {i}.", [doc_text]), [], "Q?",
                            history_budget_tokens=0, max_tokens=8) for i in range(5)]
    probe = KVCacheStore(tmp_path / "probe", budget_bytes=1 << 30)
    with engine.lock:
        size = ensure_prefix(engine, probe, prompts[0].prefix_tokens, ["d0"], "local").state_bytes
    # RAM holds 2 states, disk 3 (all prefixes are about the same size)
    store = KVCacheStore(tmp_path / "kv", budget_bytes=int(size * 3.5), ram_budget_bytes=int(size * 2.5))
    with engine.lock:
        for i, p in enumerate(prompts):  # fill both tiers past their budgets
            ensure_prefix(engine, store, p.prefix_tokens, [f"d{i}"], "local")
            assert store.ram.used_bytes <= store.ram.budget_bytes
            assert sum(e.state_bytes for e in store.entries()) <= store.budget_bytes
    on_disk = [e.doc_ids[0] for e in store.entries()]
    assert on_disk == ["d4", "d3", "d2"]
    in_ram = [store.entry(k).doc_ids[0] for k in store.ram.keys()]  # noqa: SIM118 (RamTier is no dict)
    assert in_ram == ["d4", "d3"]
    tiers = []
    with engine.lock:  # a disk-only prefix restores from disk, then from RAM; an evicted one is recomputed
        for i in (2, 2, 0):
            engine.clear_context()
            tiers.append(ensure_prefix(engine, store, prompts[i].prefix_tokens, [f"d{i}"], "local").tier)
    assert tiers == ["disk", "ram", "miss"]
    assert store.ram.used_bytes <= store.ram.budget_bytes


def test_chained_multi_document_prefix_is_identical_to_cold(tmp_path, tiny_model, doc_text):
    other = DocText("doc2", "crazyones.txt", (TESTDATA / "pdf" / "pypdf_crazyones.txt").read_text(encoding="utf-8"))
    engine = load(tiny_model)
    frame_a = frame("Answer from the documents.", [doc_text])
    frame_ab = frame("Answer from the documents.", [doc_text, other])
    prompt_a = build_prompt(engine, frame_a, [], "Q?", history_budget_tokens=0, max_tokens=8)
    prompt_ab = build_prompt(engine, frame_ab, [], "What do both say?", history_budget_tokens=0,
                             max_tokens=GREEDY.max_tokens)
    with engine.lock:  # cold: [A, B] from scratch, with nothing cached
        ensure_prefix(engine, KVCacheStore(tmp_path / "cold", budget_bytes=1 << 30), prompt_ab.prefix_tokens,
                      ["doc1", "doc2"], "local")
        cold_answer = answer_tokens(engine, prompt_ab.tokens)

    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)  # disk only: the chain goes through a file
    with engine.lock:
        engine.clear_context()
        ensure_prefix(engine, store, prompt_a.prefix_tokens, ["doc1"], "local")  # [A] is cached
        engine.clear_context()
        chained = ensure_prefix(engine, store, prompt_ab.prefix_tokens, ["doc1", "doc2"], "local")
        assert chained.tier == "miss" and chained.restore_s > 0
        # everything up to the end of document A came from A's cache; only B (and the rest) was prefilled
        assert len(prompt_a.prefix_tokens) - 16 <= chained.chained_tokens < len(prompt_a.prefix_tokens)
        assert answer_tokens(engine, prompt_ab.tokens) == cold_answer
        engine.clear_context()  # and the [A, B] prefix is now cached in its own right
        assert ensure_prefix(engine, store, prompt_ab.prefix_tokens, ["doc1", "doc2"], "local").tier == "disk"
        assert answer_tokens(engine, prompt_ab.tokens) == cold_answer


def test_plain_llama_beside_the_engine_evaluates_its_whole_prompt(tiny_model, doc_text):
    """llama-cpp-python's own ``generate`` (the benchmarks' baselines) run after the engine wrote other
    tokens into sequence 0 gives what it gave on a clean context, and the engine then claims nothing
    that ``generate`` overwrote."""
    engine = load(tiny_model)
    prompt = make_prompt(engine, doc_text)

    def plain() -> list[int]:
        with engine.plain_llama() as llm:
            return list(itertools.islice(llm.generate(prompt.tokens, temp=0.0), GREEDY.max_tokens))

    first = plain()
    other = engine.tokenize("Nothing of the document: " + "zebra quartz " * 300, add_bos=True)
    with engine.lock:
        engine.prefill(other)
    assert engine.context_tokens() == other
    assert plain() == first
    assert engine.context_tokens() == []


def test_a_pinned_document_survives_eviction_pressure_and_a_restart(tmp_path, tiny_model, doc_text):
    engine = load(tiny_model)
    store = KVCacheStore(tmp_path / "kv", budget_bytes=1 << 30)
    prompts = [build_prompt(engine, frame(f"Instructions {i}.", [doc_text]), [], "Q?",
                            history_budget_tokens=0, max_tokens=8) for i in range(4)]

    def save(i: int) -> int:
        with engine.lock:
            return ensure_prefix(engine, store, prompts[i].prefix_tokens, [f"d{i}"], "local").state_bytes

    size = save(0)  # the oldest entry: LRU's first victim
    store.pin("d0")
    store = KVCacheStore(tmp_path / "kv", budget_bytes=2 * size)  # a restart keeps the pin
    assert store.pinned == {"d0"}
    for i in (1, 2, 3):  # each save evicts past the budget
        save(i)
    assert {e.doc_ids for e in store.entries()} == {("d0",), ("d3",)}  # d1 and d2 went instead of d0
    store.pin("d0", False)  # unpinned: back under LRU, and the budget is met at once
    assert [e.doc_ids for e in store.entries()] == [("d3",), ("d0",)]
    save(1)
    assert ("d0",) not in {e.doc_ids for e in store.entries()}
    assert not list((tmp_path / "kv").glob("*.tmp")) and store.sweep() == 0  # the pins file is no sidecar
