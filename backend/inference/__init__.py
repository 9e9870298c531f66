"""Inference: the one in-process llama.cpp engine (load, tokenize, KV state, streaming), model
loading checks, the GGUF registry and downloads, the remote OpenAI-compatible engine, and the
per-run log files. Imports no other backend package.
"""

from backend.inference.engine import Engine
from backend.inference.loader import LoadParams, ModelLoadError
from backend.inference.registry import (HOW_TO_GET_A_MODEL, RECOMMENDED_MODELS, ModelDownloadError, ModelInfo, describe,
                                        download, list_models, model_identity, pick_model)
from backend.inference.remote import RemoteEngine, RemotePrompt
from backend.inference.run_logs import LEVELS, RunLogs
from backend.inference.types import EngineError, Interrupted, NoModelLoaded, Sampling, StreamStats, common_prefix_len

__all__ = ["HOW_TO_GET_A_MODEL", "LEVELS", "RECOMMENDED_MODELS", "Engine", "EngineError", "Interrupted", "LoadParams",
           "ModelDownloadError", "ModelInfo", "ModelLoadError", "NoModelLoaded", "RemoteEngine", "RemotePrompt",
           "RunLogs", "Sampling", "StreamStats", "common_prefix_len", "describe", "download", "list_models",
           "model_identity", "pick_model"]
