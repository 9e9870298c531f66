"""The Documents panel's list at library size: at most ``SHOWN_ROWS`` documents drawn (the newest), the label
saying how many of how many, the filter finding the rest, and a selection never dropped by the cap."""

from __future__ import annotations

from conftest import make_settings

from backend.services import build_services
from components import documents as panel


def test_the_list_draws_the_newest_documents_and_keeps_every_selection(tmp_path, embedder, monkeypatch):
    services = build_services(make_settings(tmp_path / "data", None), embedder=embedder)  # no model needed
    try:
        check(services, tmp_path, monkeypatch)
    finally:
        services.close()


def check(services, tmp_path, monkeypatch) -> None:
    ids = []
    for i in range(7):
        path = tmp_path / f"note-{i}.md"
        path.write_text(f"# Note {i}\n\nThis note {i} is about the {'apple' if i % 2 else 'pear'} harvest.\n")
        ids.append(services.documents.upload("local", path)[0].doc_id)
    monkeypatch.setattr(panel, "SHOWN_ROWS", 4)  # the cap, lowered so seven documents cross it

    table, selector, row_ids = panel.refresh(services, "local", selected=[ids[0]])
    assert [r[0] for r in table.value["data"]] == ["note-3.md", "note-4.md", "note-5.md", "note-6.md"]
    assert row_ids == ids[3:]
    assert selector.label == "Use in chat (the newest 4 of 7; filter by name for the rest)"
    assert [v for _, v in selector.choices] == [*ids[3:], ids[0]], "the selected oldest note is still listed"
    assert selector.value == [ids[0]]

    table, selector, _ = panel.refresh(services, "local", selected=[], query="note")  # all seven match
    assert selector.label == "Use in chat (the newest 4 of 7 matching)"
    table, selector, row_ids = panel.refresh(services, "local", selected=[], query="note-1")
    assert selector.label == "Use in chat (1 of 7 shown)" and row_ids == [ids[1]]
    assert [r[0] for r in table.value["data"]] == ["note-1.md"]
