"""The start-up check: after a crash, make the document index and the upload folders agree again.

Writes are ordered so that a crash can only leave what this check repairs (``Store._write``,
``Store.delete_document``, ``DocumentService.upload``): a document row is written last and deleted
first, so the row is the commit. What a crash can leave behind:

* chunks whose document has no row (an upload or a delete cut short): deleted;
* a row whose chunks are missing or too few (a re-index cut short): re-indexed from its file;
* an upload folder with no row (an upload that was never acknowledged): deleted, with its file;
* temp files of an atomic write (``*.tmp``) in an upload folder: deleted.

It also embeds every document again when the embedding model has changed (``Store.stale``).

Acknowledged documents are never deleted here: a row whose file is gone is kept and logged.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

from backend.documents.extract import DocumentError

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    """What the start-up check found and did (counts).

    Attributes:
        orphan_chunks: chunk rows deleted because their document had no row.
        reembedded: documents embedded again because the embedding model changed (not a repair).
        reindexed: documents whose chunks were missing or partial, indexed again from their file.
        orphan_folders: upload folders without a document row, deleted.
        temp_files: leftover ``*.tmp`` files deleted.
        unrecoverable: ids of documents whose chunks were wrong and whose file could not be read again.
    """

    orphan_chunks: int = 0
    reembedded: int = 0
    reindexed: int = 0
    orphan_folders: int = 0
    temp_files: int = 0
    unrecoverable: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing was found."""
        return not (self.orphan_chunks or self.reindexed or self.orphan_folders or self.temp_files
                    or self.unrecoverable)


def recover(documents) -> Recovery:
    """Run the start-up check over a ``DocumentService``'s store and upload folders.

    Args:
        documents: the ``DocumentService`` (its ``store``, ``uploads`` and ``reindex``).

    Returns:
        What was found and repaired; logged as one line when anything was.
    """
    store, uploads = documents.store, documents.uploads
    found = Recovery()
    if store.stale is not None:  # the embedding model changed: the index is rebuilt before anything reads it
        found.reembedded = documents.reembed_all()
    rows = {row.doc_id: row for row in store.all_documents()}
    counts = store.chunk_counts()
    orphans = set(counts) - set(rows)
    found.orphan_chunks = sum(counts[d] for d in orphans)
    store.delete_chunks(orphans)
    for doc_id, row in rows.items():
        if counts.get(doc_id, 0) != row.n_chunks:
            try:
                documents.reindex(row.owner, doc_id)
                found.reindexed += 1
            except DocumentError as exc:
                log.error("document %s (%s) has %d of its %d chunks and cannot be re-indexed: %s",
                          doc_id, row.name, counts.get(doc_id, 0), row.n_chunks, exc)
                found.unrecoverable.append(doc_id)
    if uploads.is_dir():
        for folder in uploads.iterdir():
            if folder.is_dir() and folder.name not in rows:
                shutil.rmtree(folder, ignore_errors=True)
                found.orphan_folders += 1
            elif folder.is_dir():
                for temp in folder.glob("*.tmp"):
                    temp.unlink(missing_ok=True)
                    found.temp_files += 1
    if not found.clean:
        log.warning("start-up check of the documents: %s", found)
    return found
