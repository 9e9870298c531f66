"""Slot files: an in-process state written as llama-server's slot file and read back, byte for byte; the packed
token lists llama-server writes; files cut short, of another version, or holding images refused; the shared
directory's records, names, checksums and budget; a replica's command line and fingerprint tags."""

from __future__ import annotations

import struct

import llama_cpp
import pytest

from backend.inference import Engine, ReplicaFlags
from backend.inference.loader import LoadParams
from backend.inference.replicas import rendezvous, tags_fingerprint
from backend.inference.server_flags import command, fingerprint_tags
from backend.kvcache import SlotFileError, SlotFiles, fingerprint, read_slot_file, slot_name, write_slot_file
from backend.kvcache.fingerprint import portable
from backend.kvcache.replica_prefix import slot_files_unsupported


@pytest.fixture(scope="module")
def state(tiny_model):
    """A real in-process state of 40 tokens (the tiny model, two KV streams) and its fingerprint."""
    engine = Engine(None)
    engine.load(tiny_model, LoadParams(n_ctx=512, n_seq_max=2, n_threads=1, n_threads_batch=1))
    tokens = engine.tokenize("The lighthouse at Cape Wrath was built in 1828 by Robert Stevenson. " * 3)[:40]
    with engine.lock:
        engine.claim(0, "t")
        engine.prefill(tokens, seq=0)
        data = bytes(engine.get_state(0))
    fp = fingerprint(engine)
    yield engine, tokens, data, fp
    engine.unload()


def test_a_state_round_trips_through_a_slot_file(tmp_path, state):
    engine, tokens, data, fp = state
    path = tmp_path / "x.bin"
    written = write_slot_file(path, data, tokens)
    raw = path.read_bytes()
    assert written == len(raw) == 12 + 4 * len(tokens) + len(data) - 8
    assert struct.unpack_from("<III", raw) == (llama_cpp.LLAMA_STATE_SEQ_MAGIC, llama_cpp.LLAMA_STATE_SEQ_VERSION,
                                               len(tokens))
    held, back = read_slot_file(path)
    assert held == tokens and bytes(back)[8:] == data[8:], "only the header and token list differ"
    with engine.lock:
        engine.claim(1, "t")
        engine.set_state(back, held, 1)  # llama.cpp takes it back
        assert engine.context_tokens(1) == tokens
    assert fp["n_stream"] == 2 and fp["state_version"] == llama_cpp.LLAMA_STATE_SEQ_VERSION


def test_llama_servers_packed_token_list_is_read(tmp_path, state):
    _, tokens, data, _ = state
    packed = [-1, 1, len(tokens), *tokens, 0]  # LLAMA_TOKEN_NULL, format 1, count, tokens, no media
    path = tmp_path / "packed.bin"
    path.write_bytes(struct.pack("<III", llama_cpp.LLAMA_STATE_SEQ_MAGIC, llama_cpp.LLAMA_STATE_SEQ_VERSION,
                                 len(packed)) + struct.pack(f"<{len(packed)}i", *packed) + data[8:])
    held, back = read_slot_file(path)
    assert held == tokens and bytes(back)[8:] == data[8:]
    with_media = [-1, 1, len(tokens), *tokens, 1, 0]
    path.write_bytes(struct.pack("<III", llama_cpp.LLAMA_STATE_SEQ_MAGIC, llama_cpp.LLAMA_STATE_SEQ_VERSION,
                                 len(with_media)) + struct.pack(f"<{len(with_media)}i", *with_media) + data[8:])
    with pytest.raises(SlotFileError, match="images"):
        read_slot_file(path)


@pytest.mark.parametrize("damage", ["version", "short", "tokens past the end", "not a state"])
def test_bad_slot_files_are_refused(tmp_path, state, damage):
    _, tokens, data, _ = state
    path = tmp_path / "bad.bin"
    write_slot_file(path, data, tokens)
    raw = bytearray(path.read_bytes())
    if damage == "version":
        raw[4:8] = (99).to_bytes(4, "little")
    elif damage == "short":
        raw = raw[:10]
    elif damage == "tokens past the end":
        raw = raw[:12 + 4 * 5]
    if damage == "not a state":
        with pytest.raises(SlotFileError):
            write_slot_file(path, b"\x00" * 64, tokens)
        return
    path.write_bytes(bytes(raw))
    with pytest.raises(SlotFileError):
        read_slot_file(path)


def test_the_shared_directory_names_records_and_verifies(tmp_path, state):
    _, tokens, data, fp = state
    files = SlotFiles(tmp_path / "slots", budget_bytes=10 * len(data))
    name = slot_name(fp, tokens, "alice")
    assert name == slot_name({**fp, "n_ctx": 99, "llama_cpp_system": "other"}, tokens, "alice"), "portable part only"
    assert name != slot_name(fp, tokens, "bob") and name != slot_name({**fp, "flash_attn": True}, tokens, "alice")
    rec = files.export(name, fp, tokens, data, ["d1"], "alice")
    assert rec.size == files.path(name).stat().st_size and rec.fingerprint == portable(fp)
    assert bytes(files.load(name, fp, tokens))[8:] == data[8:]
    assert files.load(name, {**fp, "type_k": "q8_0"}, tokens) is None, "another fingerprint is never loaded"
    files.export(name, fp, tokens, data, ["d1"], "alice")
    raw = bytearray(files.path(name).read_bytes())
    raw[-1] ^= 0xFF  # one flipped byte: same size, wrong checksum
    files.path(name).write_bytes(bytes(raw))
    assert files.load(name, fp, tokens) is None and not files.path(name).exists(), "deleted, never restored"
    files.export(name, fp, tokens, data, ["d1"], "alice")
    listed = files.entries()
    assert [(e.key, e.n_tokens, e.doc_ids, e.owner) for e in listed] == [(name, len(tokens), ("d1",), "alice")]
    files.delete(name)
    assert files.entries() == [] and not list((tmp_path / "slots").iterdir())


def test_the_budget_evicts_the_least_recently_used_but_never_a_pinned_document(tmp_path, state):
    _, tokens, data, fp = state
    pinned = {"keep"}
    files = SlotFiles(tmp_path / "slots", budget_bytes=int(2.5 * len(data)), pinned=lambda ids: bool(pinned & set(ids)))
    names = []
    for i, doc in enumerate(["keep", "a", "b", "c"]):
        names.append(slot_name(fp, tokens, f"user{i}"))
        files.export(names[-1], fp, tokens, data, [doc], f"user{i}")
    left = {e.doc_ids[0] for e in files.entries()}
    assert "keep" in left and len(left) == 2 and "c" in left, left


def test_a_replica_is_started_with_the_apps_cache_flags(tmp_path, tiny_model):
    flags = ReplicaFlags(tiny_model, n_ctx=4096, slots=3, flash_attn=True, type_k="q8_0", type_v="q8_0",
                         slot_dir=tmp_path, threads=2, port=8123)
    line = command(flags, "llama-server")
    joined = " ".join(line)
    for part in ("-c 12288", "-np 3", "--no-kv-unified", "-fa on", "-ctk q8_0", "-ctv q8_0", "--port 8123",
                 f"--slot-save-path {tmp_path}/", "-t 2"):
        assert part in joined, part
    tags = line[line.index("--tags") + 1].split(",")
    fp = tags_fingerprint(tags)
    assert fp == {"model_sha256": fingerprint_tags(flags)["model"], "state_version": llama_cpp.LLAMA_STATE_SEQ_VERSION,
                  "flash_attn": True, "type_k": "q8_0", "type_v": "q8_0", "n_stream": 3}
    assert tags_fingerprint(["kvc-fa=on"]) == {}, "incomplete tags are no fingerprint"


def test_rendezvous_moves_only_the_prefixes_of_a_replica_that_goes():
    urls = [f"http://10.0.0.{i}:8080" for i in range(4)]
    keys = [f"prefix-{i}" for i in range(400)]
    home = {k: rendezvous(k, urls)[0] for k in keys}
    assert len(set(home.values())) == 4 and min(list(home.values()).count(u) for u in urls) > 60
    left = urls[1:]
    moved = [k for k in keys if rendezvous(k, left)[0] != home[k]]
    assert all(home[k] == urls[0] for k in moved) and moved


def test_sliding_window_and_hybrid_models_get_no_slot_files():
    assert slot_files_unsupported({"general.architecture": "llama"}) == ""
    assert "sliding-window" in slot_files_unsupported({"general.architecture": "gemma3",
                                                       "gemma3.attention.sliding_window": "512"})
    assert "hybrid" in slot_files_unsupported({"general.architecture": "lfm2"})
