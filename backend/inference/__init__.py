"""Inference: the one in-process llama.cpp engine (load, tokenize, sequences and their KV state,
batched decode, streaming), the batch scheduler that decodes several answers together, model
loading checks, the GGUF registry and downloads, the remote OpenAI-compatible engine, the pool of
llama-server replicas (and the command that starts one with the flags the app's caches need), the
per-run log files, the preflight that runs a new model file in a child process first, the
bundled offline model, and vision projectors that put images into a prompt (libmtmd). Imports no other
backend package.
"""

from backend.inference.batching import Job, ModelChanged, Scheduler
from backend.inference.bundled import (
    BUNDLED,
    QWEN_CODER,
    SMOLLM2,
    BundledModel,
    ChunkedModel,
    best_bundled,
    bundled_path,
    bundled_present,
    fetch_bundled,
    fetch_chunked,
)
from backend.inference.engine import Engine
from backend.inference.loader import LoadParams, ModelLoadError, default_threads
from backend.inference.manager import ModelManager
from backend.inference.preflight import Preflight, PreflightResult
from backend.inference.projectors import find_projector, is_projector
from backend.inference.registry import (
                                        HOW_TO_GET_A_MODEL,
                                        RECOMMENDED_MODELS,
                                        ModelDownloadError,
                                        ModelInfo,
                                        describe,
                                        download,
                                        expectation,
                                        list_models,
                                        model_identity,
                                        pick_model,
)
from backend.inference.remote import RemoteEngine, RemotePrompt
from backend.inference.replicas import Replica, ReplicaError, ReplicaPool
from backend.inference.run_logs import LEVELS, RunLogs
from backend.inference.server_flags import AUTO_SLOTS, BUILD_HINT, ReplicaFlags, find_binary
from backend.inference.types import (
                                        EngineError,
                                        Interrupted,
                                        NoModelLoaded,
                                        Sampling,
                                        StreamStats,
                                        common_prefix_len,
                                        open_first_user,
)
from backend.inference.vision import MARKER, Projector, VisionPrompt, count_images, pixel_digest

__all__ = [
    "AUTO_SLOTS",
    "BUILD_HINT",
    "BUNDLED",
    "HOW_TO_GET_A_MODEL",
    "LEVELS",
    "MARKER",
    "QWEN_CODER",
    "RECOMMENDED_MODELS",
    "SMOLLM2",
    "BundledModel",
    "ChunkedModel",
    "Engine",
    "EngineError",
    "Interrupted",
    "Job",
    "LoadParams",
    "ModelChanged",
    "ModelDownloadError",
    "ModelInfo",
    "ModelLoadError",
    "ModelManager",
    "NoModelLoaded",
    "Preflight",
    "PreflightResult",
    "Projector",
    "RemoteEngine",
    "RemotePrompt",
    "Replica",
    "ReplicaError",
    "ReplicaFlags",
    "ReplicaPool",
    "RunLogs",
    "Sampling",
    "Scheduler",
    "StreamStats",
    "VisionPrompt",
    "best_bundled",
    "bundled_path",
    "bundled_present",
    "common_prefix_len",
    "count_images",
    "default_threads",
    "describe",
    "download",
    "expectation",
    "fetch_bundled",
    "fetch_chunked",
    "find_binary",
    "find_projector",
    "is_projector",
    "list_models",
    "model_identity",
    "open_first_user",
    "pick_model",
    "pixel_digest",
]
