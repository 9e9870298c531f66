"""Application settings: one pydantic-settings model, read from ``KVC_*`` environment variables.

Every field carries its unit in its name (``_s`` seconds, ``_mb`` mebibytes, ``_tokens``)
or uses llama.cpp's own parameter name (``n_ctx``, ``n_gpu_layers``, ``n_batch``,
``flash_attn``, ``type_k``). The README's configuration table lists them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant that answers questions about the user's documents. "
    "Answer from the documents; if they do not contain the answer, say so. "
    "Quote short passages and name the page when it helps."
)


# Sampling recommended by the Qwen3 model card ("Best Practices"): thinking mode (``on``) and
# non-thinking mode (``off``); the generation defaults below are the non-thinking ones.
QWEN3_SAMPLING = {
    "on": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0},
    "off": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0},
}


class Settings(BaseSettings):
    """All runtime configuration of the app.

    Values come from keyword arguments, then ``KVC_<FIELD>`` environment variables, then the
    defaults below. ``REDIS_URL`` is also accepted without the prefix, as most Redis tooling
    uses it.
    """

    model_config = SettingsConfigDict(env_prefix="KVC_", extra="ignore")

    # Storage
    data_dir: Path = Field(Path("data"), description="Root of everything the app writes.")
    models_dir: Path = Field(Path("models"), description="Folder scanned for *.gguf files.")
    extra_model_dirs: list[Path] = Field(default_factory=list, description="More folders listed in the Model panel (JSON list).")

    # Server (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Hugging Face Spaces set, are read too)
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("host", "KVC_HOST", "GRADIO_SERVER_NAME"),
                      description="Interface the web server binds to.")
    port: int = Field(7860, validation_alias=AliasChoices("port", "KVC_PORT", "GRADIO_SERVER_PORT"),
                      description="TCP port of the web server.")
    users_file: Path | None = Field(None, description="Local accounts for sign-in (python -m backend.access add-user NAME); "
                                                     "default data_dir/users.json. With users in it, sign-in is on.")
    admins: list[str] = Field(default_factory=list, description="User names that may manage models and read logs "
                                                                "(JSON list), besides those added with --admin.")
    allow_anonymous: bool = Field(False, description="Start without sign-in even when reachable from other machines "
                                                     "(--share, a non-loopback host, a Space); a banner says so.")
    # Per-user limits for signed-in users who are not admins (0 = off); kept in Redis
    questions_per_minute: int = Field(20, ge=0, description="Chat questions a user may ask in any 60 s.")
    uploads_per_day: int = Field(100, ge=0, description="Documents a user may upload in any 24 h.")
    quota_stored_mb: float = Field(1024.0, ge=0, description="Total size of a user's uploaded files, MiB.")
    quota_documents: int = Field(200, ge=0, description="Documents a user may keep.")
    max_concurrent_turns: int = Field(2, ge=0, description="Answers a user may have streaming at once.")
    space_storage_dir: Path = Field(Path("/data"), description="Where a Hugging Face Space mounts its persistent "
                                                               "storage; on a Space with it, data_dir and models_dir move there.")
    share: bool = Field(False, description="Create a public Gradio share link.")
    max_upload_mb: float = Field(50.0, gt=0, description="Largest accepted upload, MiB.")
    mcp_server: bool = Field(False, description="Serve the API's public endpoints as MCP tools (streamable HTTP at /gradio_api/mcp/).")
    ocr: bool = Field(True, description="Read PDF pages without a usable text layer (scans), and uploaded images, "
                                        "with OCR (RapidOCR, offline).")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Most pixels (width x height) of an uploaded image; "
                                                               "larger ones, and decompression bombs, are refused.")
    max_images_per_message: int = Field(4, ge=1, description="Most images one chat message may carry.")
    max_image_mb: float = Field(20.0, gt=0, description="Largest image a chat message may carry, MiB.")
    describe_max_tokens: int = Field(96, ge=8, description="Longest description a vision model writes of an "
                                                          "uploaded image (stored beside its OCR text), tokens.")

    # Model
    model_path: Path | None = Field(None, description="GGUF file to load; default: first in models_dir.")
    hf_repo_id: str = Field("Qwen/Qwen3-0.6B-GGUF", description="Hugging Face repo of the default model.")
    hf_filename: str = Field("Qwen3-0.6B-Q8_0.gguf", description="File in hf_repo_id to download.")
    auto_download: bool = Field(True, description="Download the default model at start when none is found.")
    n_ctx: int = Field(8192, ge=256, description="Context window, tokens (capped at the model's).")
    n_gpu_layers: int = Field(-1, description="Layers offloaded to the GPU; -1 = all (ignored by CPU builds).")
    n_batch: int = Field(512, ge=1, description="Prompt tokens evaluated per llama_decode call (llama.cpp's logical batch).")
    n_ubatch: int = Field(512, ge=1, description="Tokens llama.cpp computes at once inside a decode call (its physical "
                                                 "batch; capped at n_batch).")
    n_seq_max: int = Field(0, ge=0, le=64, description="Answers decoded together in one batch (llama-server's "
                                                      "--parallel), each with its own n_ctx; 0 = as many as fit "
                                                      "in a quarter of free memory, at most 4.")
    prefill_chunk_tokens: int = Field(128, ge=1, description="Prompt tokens a batch step evaluates while other "
                                                             "answers stream (chunked prefill).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for decode; default: every core.")
    n_threads_batch: int | None = Field(None, ge=1, description="CPU threads for prefill; default: every core.")
    flash_attn: bool = Field(False, description="Use flash attention (changes KV layout, so part of the cache fingerprint).")
    type_k: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="KV cache dtype for K (q8_0 halves the KV bytes, q4_0 about quarters them).")
    type_v: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="KV cache dtype for V (q8_0 and q4_0 need flash_attn).")
    use_mmap: bool = Field(True, description="Memory-map the model file (llama.cpp's use_mmap).")
    use_mlock: bool = Field(False, description="Lock the model's pages in RAM (llama.cpp's use_mlock).")
    use_extra_bufts: bool = Field(True, description="llama.cpp's extra CPU buffer types for weights (AMX, repacking); "
                                                    "turned off by itself when a model crashes with them.")
    preflight_timeout_s: float = Field(300.0, gt=0, description="Longest a new model's preflight (a trial load and "
                                                                 "decode in a child process) may take, seconds.")

    # Remote inference: llama-server replicas (with the model file here too: token prompts, slot files), or any
    # OpenAI-compatible server (vLLM, SGLang: chat messages, its own prefix cache)
    remote_base_url: str | None = Field(None, description="Where answers are computed: llama-server replicas, "
                                                          "comma-separated (http://10.0.0.5:8080,http://10.0.0.6:8080), "
                                                          "or one OpenAI-compatible API root (http://gpu-box:8000/v1).")
    remote_slot_dir: Path | None = Field(None, description="The directory the llama-server replicas save slots to "
                                                           "(their --slot-save-path), shared by them; the app reads and "
                                                           "writes it when it can see it.")
    remote_slot_budget_mb: float = Field(20480.0, gt=0, description="Disk space for slot files in remote_slot_dir, "
                                                                    "MiB; least recently used go first.")
    remote_api_key: str | None = Field(None, description="Bearer token for the remote server.")
    remote_model: str = Field("default", description="Model name the remote server serves.")
    remote_n_ctx: int = Field(8192, ge=256, description="The remote server's context window, tokens.")

    # Generation (defaults: Qwen3 non-thinking recommendations from its model card)
    max_tokens: int = Field(512, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(20, ge=0, description="Sample from the top-k tokens; 0 = off.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Minimum token probability relative to the best.")
    repeat_penalty: float = Field(1.0, gt=0.0, description="Penalty for repeated tokens; 1 = off.")
    seed: int = Field(-1, description="Sampling seed; -1 = random.")
    ignore_eos: bool = Field(False, description="Never end an answer early: every answer runs to its max_tokens "
                             "(llama-server's --ignore-eos; for load tests and benchmarks).")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="Fixed instructions at the start of the cached prefix.")
    turn_datetime: Literal["auto", "on", "off"] = Field(
        "auto", description="Put the current date and time in the question (never in the cached prefix): auto = only "
                            "when the question asks about time (today, now, current, this year, ago...); on = every "
                            "question; off = never. true/false mean on/off.")
    history_budget_tokens: int = Field(1024, ge=0, description="Context reserved for earlier turns, tokens.")
    reader_check: Literal["auto", "always", "off"] = Field(
        "auto", description="After an answer, ask the model whether its top source answers the question (one short "
                            "prompt, no new tokens; a signal of the verdict): auto = when the model's calibration "
                            "weighs it; always = every judged answer (calibrating); off = never.")

    # Web search (optional per message)
    search_url: str | None = Field(None, description="SearXNG search URL with the JSON format enabled, e.g. http://localhost:8888/search.")
    search_timeout_s: float = Field(5.0, gt=0, description="Web search timeout, seconds.")
    search_max_results: int = Field(5, ge=1, description="Web results put into a question.")

    # Long-term memory
    remember_across_sessions: bool = Field(False, description="Recall the user's related questions from other sessions into each turn.")
    memory_top_k: int = Field(3, ge=1, description="Past questions recalled into a turn.")

    # Retrieval
    embedding_model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    embed_batch_size: int = Field(64, ge=1, description="Chunks per embedding batch.")
    warm_up: bool = Field(True, description="Right after the first screen is served, load in the background what it "
                                            "does not need (the documents' index, the embedding model, OCR, the vision "
                                            "projector); off: each loads when first used.")
    chunk_tokens: int = Field(256, ge=16, description="Longest chunk in embedding-model tokens (capped at its max_seq_length); chunks follow paragraphs.")
    chunk_overlap_tokens: int = Field(40, ge=0, description="Tokens shared by neighbouring windows of a paragraph longer than a chunk.")
    cag_max_tokens: int | None = Field(
        None, ge=1, description="Longest document prefix Auto reads whole (CAG), tokens; longer ones are answered by "
                                "retrieval. Default: by the model's size (backend/chat/modes.py; measure yours with "
                                "benchmarks/modes.py).")
    retrieval_top_k: int = Field(5, ge=1, description="Chunks retrieved for a RAG turn (shown as its sources).")
    rag_prefix_chunks: int = Field(
        1, ge=0, le=8,
        description="Best chunks a RAG turn puts in its cached prefix; each chunk set's KV state is saved like a "
                    "document's, so a question about a chunk seen before starts at primed-document speed. "
                    "0: the top retrieval_top_k chunks go in the user turn instead, prefilled every turn.")

    # KV cache and sessions
    kv_disk_budget_mb: float = Field(4096.0, gt=0, description="Disk space for KV cache files, MiB; LRU eviction past it.")
    prime_on_upload: bool = Field(False, description="Cache each uploaded document at once when a model is loaded (a document longer than n_ctx: each chunk's RAG prefix).")
    disk_reserve_mb: float = Field(256.0, ge=0, description="Free space kept on the data dir's disk: uploads and KV "
                                                            "caching stop there, so chats can still be saved, MiB.")
    kv_ram_budget_mb: float = Field(2048.0, ge=0, description="Memory for recently used KV states, MiB (0 = off); LRU eviction past it.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("redis_url", "KVC_REDIS_URL", "REDIS_URL"),
        description="External Redis; default: an embedded redis-server under data_dir.",
    )
    redis_appendfsync: Literal["everysec", "always", "no"] = Field(
        "always", description="When the embedded Redis flushes its append-only file: always (an fsync before each "
                              "write is acknowledged: nothing is lost), everysec (a Redis crash while the disk is "
                              "busy, or a power loss, can lose the last seconds of chat turns) or no.")
    session_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Session lifetime after last use, seconds.")
    extract_time_limit_s: float = Field(120.0, gt=0, description="Seconds a file's parsers (pypdf, python-docx, the "
                                        "text decoder, the image check) may take, in a child process; a file past "
                                        "it, or one that crashes them, is refused with a sentence.")
    log_cap_mb: float = Field(20.0, gt=0, description="Most disk the app's log (logs/app.log and its rotated files) "
                              "takes, and the same for the model runs' logs (logs/runs), MB.")
    purge_delay_s: float = Field(60.0, ge=0, description="After a document or chat is deleted, how long until the "
                                 "clean-up removes its bytes from LanceDB's old versions and Redis's files, seconds "
                                 "(docs/security.md).")
    upkeep_interval_s: float = Field(3600.0, ge=0, description="Between two clean-ups when nothing is deleted "
                                     "(compaction of the index), seconds; 0: only after deletes.")
    shutdown_grace_s: float = Field(10.0, ge=0, description="On SIGTERM or Ctrl-C, how long answers in flight may "
                                                            "go on before they are stopped and saved as partial, seconds.")

    @field_validator("turn_datetime", mode="before")
    @classmethod
    def _datetime_switch(cls, value):
        """Accept the old boolean form of ``turn_datetime`` (true = on, false = off)."""
        if isinstance(value, bool):
            return "on" if value else "off"
        lowered = str(value).strip().lower()
        return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(lowered, lowered)

    @property
    def on_space(self) -> bool:
        """Running on Hugging Face Spaces (which sets ``SPACE_ID`` and ``SYSTEM=spaces``)."""
        return bool(os.environ.get("SPACE_ID")) or os.environ.get("SYSTEM") == "spaces"

    @property
    def hf_oauth(self) -> bool:
        """Sign-in with Hugging Face: a Space whose card sets ``hf_oauth: true`` (Spaces then set ``OAUTH_CLIENT_ID``)."""
        return self.on_space and bool(os.environ.get("OAUTH_CLIENT_ID"))

    @property
    def space_storage(self) -> bool:
        """On a Space with persistent storage attached (``space_storage_dir`` is a writable folder)."""
        return self.on_space and self.space_storage_dir.is_dir() and os.access(self.space_storage_dir, os.W_OK)

    @property
    def replica_urls(self) -> list[str]:
        """``remote_base_url`` as a list (comma-separated; empty entries dropped)."""
        return [u.strip() for u in (self.remote_base_url or "").split(",") if u.strip()]

    @model_validator(mode="after")
    def _space_storage(self) -> Settings:
        """On a Space with persistent storage, keep data and models there unless set explicitly; the
        Hugging Face cache goes there too (``HF_HOME``, as the Spaces storage docs advise)."""
        if self.space_storage:
            if "data_dir" not in self.model_fields_set and not os.environ.get("KVC_DATA_DIR"):
                self.data_dir = self.space_storage_dir / "kvcache-chatbot"
            if "models_dir" not in self.model_fields_set and not os.environ.get("KVC_MODELS_DIR"):
                self.models_dir = self.space_storage_dir / "models"
            os.environ.setdefault("HF_HOME", str(self.space_storage_dir / ".huggingface"))
        return self

    @property
    def users_path(self) -> Path:
        """The users file: ``users_file`` or ``data_dir/users.json``."""
        return self.users_file or self.data_dir / "users.json"

    @property
    def exposed(self) -> bool:
        """Reachable from other machines: a share link, a non-loopback ``host``, or a Space."""
        return self.share or self.on_space or self.host not in ("127.0.0.1", "localhost", "::1")

    @property
    def max_upload_bytes(self) -> int:
        """The upload size limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    def path(self, name: str) -> Path:
        """Return ``data_dir / name``, creating the folder.

        Args:
            name: one of ``uploads``, ``lancedb``, ``kvcache``, ``redis``, ``logs``, ``preflight``.

        Returns:
            The folder's path.
        """
        folder = self.data_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder
