"""Documents through the real pipeline: chunk limits, sections, filtered search, re-index, delete."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import TESTDATA, make_settings

from backend.documents import DocumentError, Page, chunk_pages, embedding_text, extract, title_of
from backend.services import build_services

OWNER = "local"


@pytest.fixture
def services(tmp_path, tiny_model, embedder):
    svc = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    yield svc
    svc.close()


def upload(svc, tmp_path, relative: str):
    source = TESTDATA / relative
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    row, created = svc.documents.upload(OWNER, copy)
    assert created
    return row


@pytest.mark.parametrize("relative", ["longdoc/pride_and_prejudice_pg1342.txt", "md_txt/pandoc_MANUAL.md",
                                      "pdf/pdfjs_tracemonkey.pdf", "docx/pandoc_unicode.docx"])
def test_no_chunk_exceeds_the_embedders_max_seq_length(embedder, relative):
    path = TESTDATA / relative
    doc = extract(path.read_bytes(), path.name)
    # the app's own window, asked for larger than the model can take: the limit must still hold
    chunks = chunk_pages(doc.pages, "d", embedder.tokenizer, embedder.max_seq_length * 2, 40, embedder.max_seq_length)
    assert chunks
    title = title_of(path.name) + " with a long subtitle" * 40  # a context line that cannot fit whole
    for chunk in chunks:
        with_specials = len(embedder.tokenizer(chunk.text)["input_ids"])  # [CLS] ... [SEP]
        assert with_specials <= embedder.max_seq_length, (chunk.index, with_specials)
        embedded = embedding_text(chunk, title, embedder.tokenizer, embedder.max_seq_length)
        assert embedded.endswith(chunk.text)  # the context line gives way, never the chunk
        assert len(embedder.tokenizer(embedded)["input_ids"]) <= embedder.max_seq_length
    # and the windows cover the text: every word of the document is in some chunk
    chunk_words = set(re.findall(r"\w+", " ".join(c.text for c in chunks)))
    assert set(re.findall(r"\w+", doc.text)) <= chunk_words


def test_chunks_follow_paragraphs_and_only_long_ones_are_windowed(embedder):
    tok = embedder.tokenizer
    heading = "Harbor Lighthouses"
    paragraphs = [f"The lighthouse of town {i} was built in {1800 + i} and its lamp is {c}. " * 6
                  for i, c in enumerate(["green", "red", "blue"])]
    long = " ".join(f"Sentence {i} of the long paragraph talks about tides and ships." for i in range(80))
    text = "\n\n".join([heading, *paragraphs, "Chapter 2", long, "The end."])
    chunks = chunk_pages([Page(1, text)], "d", tok, 254, 40, embedder.max_seq_length)
    # the heading is short, so it joins the first paragraph; every other paragraph is its own chunk
    assert chunks[0].text == heading + "\n\n" + paragraphs[0].strip()
    assert [c.text for c in chunks[1:3]] == [p.strip() for p in paragraphs[1:]]
    windows = [c for c in chunks if "long paragraph" in c.text]
    assert len(windows) >= 3 and all(c.n_tokens <= 254 for c in windows)
    # a heading before a paragraph too long to join whole starts its first window, never a chunk of its own
    assert windows[0].text.startswith("Chapter 2\n\nSentence 0 ") and "Chapter 2" not in [c.text for c in chunks]
    assert all(w.text in long for w in windows[1:])  # the other windows stay inside their paragraph
    assert " ".join(windows[0].text.split()[-8:]) in windows[1].text  # neighbouring windows overlap
    assert chunks[-1].text == "The end."  # a short last paragraph has nothing after it to join
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.fixture(scope="module")
def manual(tmp_path_factory, tiny_model, embedder):
    """Services with the first 35 KB of pandoc's manual (its Description and General options: 26 sections, many
    chunks) uploaded once for the tests that only read it (the whole 300 KB took over a minute to embed here)."""
    tmp_path = tmp_path_factory.mktemp("manual")
    svc = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    lines = (TESTDATA / "md_txt" / "pandoc_MANUAL.md").read_text(encoding="utf-8").splitlines(keepends=True)
    part = tmp_path / "part" / "pandoc_MANUAL.md"
    part.parent.mkdir()
    part.write_text("".join(lines[:826]), encoding="utf-8")  # up to "## General writer options"
    row, created = svc.documents.upload(OWNER, part)
    assert created
    yield svc, row
    svc.close()


@pytest.mark.slow
def test_service_caps_chunk_size_to_the_model(manual):
    services, row = manual
    tok = services.embedder.tokenizer
    texts = services.store.document_chunks(OWNER, row.doc_id)
    assert len(texts) == row.n_chunks > 40
    assert max(len(tok(t)["input_ids"]) for t in texts) <= services.embedder.max_seq_length


@pytest.mark.slow
def test_markdown_sections_reach_search_hits(manual):
    services, row = manual
    hits = services.documents.search(OWNER, "How do I specify the input and output formats?", [row.doc_id], 5)
    assert hits and all(h.doc_id == row.doc_id and h.name == "pandoc_MANUAL.md" for h in hits)
    assert any(h.section.startswith("Description > Specifying formats") for h in hits), [h.section for h in hits]


@pytest.mark.slow
def test_search_with_a_document_filter_never_returns_another_documents_chunk(services, tmp_path):
    crazy = upload(services, tmp_path, "pdf/pypdf_crazyones.pdf")
    latex = upload(services, tmp_path, "pdf/sf_pdflatex-4-pages.pdf")
    tables = upload(services, tmp_path, "md_txt/pandoc_tables.md")
    queries = ["Here's to the crazy ones, the misfits, the rebels", "Simple table with caption",
               "crazy misfits rebels troublemakers", "the"]
    for method in ("hybrid", "vector", "fts"):
        for query in queries:
            for allowed in ([latex.doc_id], [tables.doc_id], [latex.doc_id, tables.doc_id]):
                hits = services.documents.search(OWNER, query, allowed, 100, method)
                assert all(h.doc_id in allowed for h in hits), (method, query)
            best = services.documents.search(OWNER, queries[0], [crazy.doc_id, latex.doc_id], 3, method)
            assert best[0].doc_id == crazy.doc_id
    # the filter applies before ranking: the best chunk of the allowed document still comes back
    only_latex = services.documents.search(OWNER, queries[0], [latex.doc_id], 1)
    assert len(only_latex) == 1 and only_latex[0].doc_id == latex.doc_id
    assert services.store.search("someone-else", queries[0], services.embedder.encode_query(queries[0]),
                                 [crazy.doc_id], 5) == []
    with pytest.raises(DocumentError, match="does not exist"):
        services.documents.search(OWNER, "x", ["no-such-doc"], 3)
    with pytest.raises(DocumentError, match="empty"):
        services.documents.search(OWNER, "  ", [], 3)


def test_query_embeddings_come_from_an_lru_cache(embedder):
    embedder.encode_query.cache_clear()
    first = embedder.encode_query("what is a trace tree?")
    again = embedder.encode_query("what is a trace tree?")
    assert again is first and not first.flags.writeable
    info = embedder.encode_query.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert abs(float((first * embedder.encode(["what is a trace tree?"])[0]).sum()) - 1.0) < 1e-5


def test_fulltext_index_is_updated_incrementally(services, tmp_path, monkeypatch):
    import backend.documents.store as store_module

    monkeypatch.setattr(store_module, "OPTIMIZE_EVERY_WRITES", 2)  # 20 in the app
    upload(services, tmp_path, "pdf/pypdf_crazyones.pdf")  # builds the index
    (index,) = [ix for ix in services.store.chunks.list_indices() if ix.columns == ["text"]]
    latex = upload(services, tmp_path, "pdf/sf_pdflatex-4-pages.pdf")
    stats = services.store.chunks.index_stats(index.name)
    assert stats.num_unindexed_rows == latex.n_chunks  # not folded in yet: one write since the index
    hits = services.documents.search(OWNER, "Huardest gefburn", [], 1, "fts")  # only in the second file
    assert hits and hits[0].doc_id == latex.doc_id  # found all the same: unindexed rows are searched exactly
    upload(services, tmp_path, "md_txt/pandoc_tables.md")  # the second write since: optimize() folds them in
    (after,) = [ix for ix in services.store.chunks.list_indices() if ix.columns == ["text"]]
    stats = services.store.chunks.index_stats(after.name)
    assert stats.num_unindexed_rows == 0 and stats.num_indexed_rows == services.store.count_chunks()
    assert services.documents.search(OWNER, "Huardest gefburn", [], 1, "fts")[0].doc_id == latex.doc_id


@pytest.mark.slow
def test_reindex_keeps_the_id_and_rebuilds_chunks(services, tmp_path):
    row = upload(services, tmp_path, "pdf/sf_pdflatex-4-pages.pdf")
    before = services.store.document_chunks(OWNER, row.doc_id)
    again = services.documents.reindex(OWNER, row.doc_id)
    assert (again.doc_id, again.uploaded_at, again.n_chunks) == (row.doc_id, row.uploaded_at, row.n_chunks)
    assert services.store.document_chunks(OWNER, row.doc_id) == before
    assert len(services.documents.list(OWNER)) == 1
    (services.settings.data_dir / "uploads" / row.doc_id / "pages.json").unlink()  # lost text: re-index restores it
    services.documents.reindex(OWNER, row.doc_id)
    assert services.documents.text(OWNER, row.doc_id).text.startswith("[page 1]")


@pytest.mark.slow
def test_delete_removes_file_rows_and_caches(services, tmp_path):
    row = upload(services, tmp_path, "pdf/pypdf_crazyones.pdf")
    keep = upload(services, tmp_path, "md_txt/pandoc_tables.md")
    services.primer.cache_documents(OWNER, [row.doc_id])
    assert services.kv_store.entries()
    services.documents.delete(OWNER, row.doc_id)
    assert not (services.settings.data_dir / "uploads" / row.doc_id).exists()
    assert [d.doc_id for d in services.documents.list(OWNER)] == [keep.doc_id]
    assert services.store.document_chunks(OWNER, row.doc_id) == []
    assert not any(row.doc_id in e.doc_ids for e in services.kv_store.entries())
    assert services.documents.search(OWNER, "crazy ones", [], 5)[0].doc_id == keep.doc_id


@pytest.mark.slow
def test_uploads_from_many_threads_at_once_all_index(services, tmp_path):
    # the shared fast tokenizer once mixed up padding between threads (found by benchmarks/load.py)
    import threading

    paths = []
    for i in range(6):
        path = tmp_path / f"notes-{i}.md"
        path.write_text("\n\n".join(f"User {i} paragraph {j}: " + "word " * (5 + 13 * ((i + j) % 7))
                                    for j in range(60)), encoding="utf-8")
        paths.append(path)
    errors, start = [], threading.Barrier(len(paths))

    def upload(path):
        start.wait()
        try:
            services.documents.upload(f"user{path.stem[-1]}", path)
        except Exception as exc:  # noqa: BLE001 (collected: the assertion below names it)
            errors.append(repr(exc))

    threads = [threading.Thread(target=upload, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(len(services.documents.list(f"user{i}")) == 1 for i in range(6))
