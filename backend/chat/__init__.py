"""Chat: one turn (plan, prompt layout and budgets, turn input, thinking split, metrics), priming
and prefetch of document prefixes, Redis sessions and their export, analytics over saved answers,
long-term memory, web search, images in a question (and descriptions of uploaded ones), and the reader's own
yes or no on an answer's source (a verdict signal).
The top of the graph: imports ``kvcache``, ``inference`` and ``documents``; nothing imports it
but the composition root (``backend.services``) and the UI.
"""

from backend.chat.analytics import TIME_RANGES_S, AnswerPoint, answer_points, since_for, totals
from backend.chat.export import FORMATS, export_session, source_location
from backend.chat.images import describe_image, sweep_images
from backend.chat.memory import MemoryIndex
from backend.chat.metrics import budget_line, metrics_line, seconds, turn_metrics
from backend.chat.planner import ChatError, Plan, Planner
from backend.chat.priming import Primer
from backend.chat.prompts import Frame, Prompt, build_prompt, document_block, frame, prefix_tokens
from backend.chat.reader_check import ReaderCheck
from backend.chat.service import ChatService
from backend.chat.sessions import Session, SessionError, SessionNotFound, SessionStore
from backend.chat.text import TextError, clean_text, printable
from backend.chat.thinking import ThinkSplitter, split_thinking
from backend.chat.turn_input import compose, date_line, dated
from backend.chat.turns import Turn, TurnEvent
from backend.chat.web_search import WebSearchError, needs_web, search_web

__all__ = [
           "FORMATS",
           "TIME_RANGES_S",
           "AnswerPoint",
           "ChatError",
           "ChatService",
           "Frame",
           "MemoryIndex",
           "Plan",
           "Planner",
           "Primer",
           "Prompt",
           "ReaderCheck",
           "Session",
           "SessionError",
           "SessionNotFound",
           "SessionStore",
           "TextError",
           "ThinkSplitter",
           "Turn",
           "TurnEvent",
           "WebSearchError",
           "answer_points",
           "budget_line",
           "build_prompt",
           "clean_text",
           "compose",
           "date_line",
           "dated",
           "describe_image",
           "document_block",
           "export_session",
           "frame",
           "metrics_line",
           "needs_web",
           "prefix_tokens",
           "printable",
           "search_web",
           "seconds",
           "since_for",
           "source_location",
           "split_thinking",
           "sweep_images",
           "totals",
           "turn_metrics",
]
