"""Documents: extraction (PDF, DOCX, text; OCR for scanned PDF pages and images), token-aware chunking, sentence-transformers embeddings,
the LanceDB tables with hybrid search (and an ANN index for large libraries), zip uploads opened into
their documents, and the service that uploads, lists, re-indexes and deletes.

Imports no other backend package: what it needs of the model (token counts, dropping KV caches)
is handed to ``DocumentService`` as callables by the composition root (``backend.services``).
"""

from backend.documents.bundle import Bundle, expand
from backend.documents.chunking import chunk_pages, embedding_text, title_of
from backend.documents.embeddings import Embedder
from backend.documents.extract import DocumentError, Extracted, Page, PasswordRequired, extract
from backend.documents.images import IMAGE_EXTENSIONS, ImageError, open_image
from backend.documents.ocr import PageOcr, needs_ocr, unreadable_share
from backend.documents.once import LoadError, Once
from backend.documents.recovery import Recovery
from backend.documents.service import DocText, DocumentService
from backend.documents.store import Store
from backend.documents.tables import DocumentRow, Hit, purge_versions, sql_quote, table_names

__all__ = ["IMAGE_EXTENSIONS", "Bundle", "DocText", "DocumentError", "DocumentRow", "DocumentService", "Embedder",
           "Extracted", "Hit", "ImageError", "LoadError", "Once", "Page", "PageOcr", "PasswordRequired", "Recovery",
           "Store", "chunk_pages", "embedding_text", "expand", "extract", "needs_ocr", "open_image", "purge_versions",
           "sql_quote", "table_names", "title_of", "unreadable_share"]
