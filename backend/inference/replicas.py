"""A pool of llama-server replicas: which are up, what each is (model, slots, cache fingerprint), which one a prefix
goes to, and the slot operations and completions the app asks of them, over httpx.

A question goes where its cache is: the replica is picked by the prefix's slot name with rendezvous (highest random
weight) hashing over the replicas that are up (Thaler & Ravishankar, 1998), so every app process sends the same
document to the same replica, and when one goes down only its prefixes move. Within a replica the app keeps its own
record of what each slot holds (``SlotMap``): a slot that holds the prefix is reused, else an idle one gets the
prefix restored from the shared slot directory (or computed, then saved there). That record only saves restores; a
replica restarted or shared with another app process is detected (``/slots`` shows no task on a slot the record
says is filled) or, at worst, costs a prompt llama-server evaluates again: it compares tokens itself
(``cache_prompt``), so a wrong record is never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from backend.inference.server_flags import TAG_PREFIX
from backend.inference.types import EngineError, Sampling, StreamStats

log = logging.getLogger(__name__)

DOWN_RETRY_S = 5.0  # a replica marked down is probed again after this long


class ReplicaError(EngineError):
    """A replica failed or refused; ``str(err)`` is one sentence."""


@dataclass
class Replica:
    """One llama-server.

    Attributes:
        url: its root, e.g. ``http://10.0.0.5:8080``.
        up: it answered its last probe or request.
        model: the model file it serves (``/props``'s ``model_path`` name).
        slots: its parallel slots (``-np``).
        n_ctx: context window per slot, tokens.
        fingerprint: its cache fingerprint from its ``kvc-*`` tags (``server_flags.fingerprint_tags``), mapped to
            the app's names (``model_sha256``, ``state_version``, ``flash_attn``, ``type_k``, ``type_v``,
            ``n_stream``); {} when it was started without them.
        build: its ``build_info``.
        error: why it is down, one sentence.
        checked_at: ``time.monotonic()`` of the last probe.
    """

    url: str
    up: bool = False
    model: str = ""
    slots: int = 0
    n_ctx: int = 0
    fingerprint: dict = field(default_factory=dict)
    build: str = ""
    error: str = "not probed yet"
    checked_at: float = 0.0


def tags_fingerprint(tags: list[str]) -> dict:
    """A replica's cache fingerprint from its ``--tags`` (``kvc-fa=on`` ...), in the app's field names; {} when
    the tags do not carry all of it."""
    found = dict(t[len(TAG_PREFIX):].split("=", 1) for t in tags if t.startswith(TAG_PREFIX) and "=" in t)
    try:
        return {"model_sha256": found["model"], "state_version": int(found["state"]),
                "flash_attn": found["fa"] == "on", "type_k": found["ctk"], "type_v": found["ctv"],
                "n_stream": int(found["streams"])}
    except (KeyError, ValueError):
        return {}


def rendezvous(key: str, candidates: list[str]) -> list[str]:
    """``candidates`` ordered by rendezvous hashing for ``key`` (the first is its home; the next, its home when
    the first is gone)."""
    return sorted(candidates, key=lambda c: hashlib.sha256(f"{key}|{c}".encode()).digest(), reverse=True)


class SlotMap:
    """What the app last put in each slot of one replica, and which slots its own turns are using."""

    def __init__(self, slots: int):
        self.holding: list[str | None] = [None] * slots  # slot -> the slot name (prefix) it was given
        self.busy: list[bool] = [False] * slots
        self.used_at: list[float] = [0.0] * slots
        self.cond = threading.Condition()

    def acquire(self, name: str, timeout_s: float = 600.0) -> tuple[int, bool]:
        """A slot for a turn on prefix ``name``: an idle one that holds it, else the least recently used idle one.

        Returns:
            ``(slot, holds)``: ``holds`` is True when the record says the slot has the prefix already.

        Raises:
            ReplicaError: no slot came free within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while all(self.busy):
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise ReplicaError("Every slot of the replica stayed busy; ask again in a moment.")
            idle = [i for i, b in enumerate(self.busy) if not b]
            holding = [i for i in idle if self.holding[i] == name]
            slot = holding[0] if holding else min(idle, key=lambda i: self.used_at[i])
            self.busy[slot], self.used_at[slot] = True, time.monotonic()
            return slot, bool(holding)

    def release(self, slot: int, holding: str | None) -> None:
        """The turn on ``slot`` ended; the slot now holds prefix ``holding`` (None: unknown)."""
        with self.cond:
            self.busy[slot], self.holding[slot] = False, holding
            self.cond.notify()

    def forget(self) -> None:
        """The replica restarted or went down: no slot is known to hold anything."""
        with self.cond:
            self.holding = [None] * len(self.holding)


class ReplicaPool:
    """The replicas of ``KVC_REMOTE_BASE_URL`` (comma-separated).

    Args:
        urls: each replica's root (a trailing ``/v1`` is dropped).
        api_key: sent as a Bearer token (optional).
        timeout_s: read timeout of a request, seconds (a completion streams within it).
    """

    def __init__(self, urls: list[str], api_key: str | None = None, timeout_s: float = 600.0):
        self.replicas = [Replica(u.strip().rstrip("/").removesuffix("/v1")) for u in urls if u.strip()]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=3.0))
        self.maps: dict[str, SlotMap] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    # membership ---------------------------------------------------------------------------
    def probe(self, replica: Replica) -> Replica:
        """Ask a replica what it is (``/health``, ``/props``, ``/v1/models``); marks it up or down."""
        try:
            self.http.get(f"{replica.url}/health", timeout=3.0).raise_for_status()
            props = self.http.get(f"{replica.url}/props", timeout=3.0).json()
            models = self.http.get(f"{replica.url}/v1/models", timeout=3.0).json().get("data") or [{}]
            replica.slots = int(props.get("total_slots") or 1)
            replica.n_ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0)
            replica.model = str(props.get("model_path") or "").rsplit("/", 1)[-1]
            replica.build = str(props.get("build_info") or "")
            replica.fingerprint = tags_fingerprint(models[0].get("tags") or [])
            replica.up, replica.error = True, ""
        except (httpx.HTTPError, ValueError) as exc:
            self.mark_down(replica, f"it does not answer ({type(exc).__name__})")
        replica.checked_at = time.monotonic()
        with self._lock:
            current = self.maps.get(replica.url)
            if replica.up and (current is None or len(current.holding) != replica.slots):
                self.maps[replica.url] = SlotMap(replica.slots)
        return replica

    def mark_down(self, replica: Replica, why: str) -> None:
        """Take a replica out of rotation until its next probe (its slots' contents are forgotten)."""
        if replica.up:
            log.warning("replica %s is down: %s", replica.url, why)
        replica.up, replica.error, replica.checked_at = False, why, time.monotonic()
        slot_map = self.maps.get(replica.url)
        if slot_map is not None:
            slot_map.forget()

    def up(self, recheck: bool = False) -> list[Replica]:
        """The replicas that are up, probing those never probed and those down for ``DOWN_RETRY_S`` (with
        ``recheck``: every one that is down, at once: none is left to try, and one may just have come back)."""
        now = time.monotonic()
        for r in self.replicas:
            if (not r.checked_at) or (not r.up and (recheck or now - r.checked_at >= DOWN_RETRY_S)):
                self.probe(r)
        return [r for r in self.replicas if r.up]

    def ranked(self, key: str, recheck: bool = False) -> list[Replica]:
        """The replicas that are up, in the order a prefix with this key tries them (``rendezvous``); ``recheck``
        probes every one that is down first (``up``)."""
        live = {r.url: r for r in self.up(recheck)}
        return [live[u] for u in rendezvous(key, list(live))]

    def status(self) -> list[dict]:
        """Each replica: url, up, model, slots, n_ctx, fingerprint, build, error (probed now)."""
        return [{"url": r.url, "up": r.up, "model": r.model, "slots": r.slots, "n_ctx": r.n_ctx,
                 "fingerprint": r.fingerprint, "build": r.build, "error": r.error}
                for r in (self.probe(x) for x in self.replicas)]

    def slot_map(self, replica: Replica) -> SlotMap:
        with self._lock:
            return self.maps.setdefault(replica.url, SlotMap(max(replica.slots, 1)))

    # slot operations ----------------------------------------------------------------------
    def _post(self, replica: Replica, path: str, body: dict) -> dict:
        """POST JSON to a replica; a refusal raises ``ReplicaError`` with its message, a dead connection marks it
        down and raises too."""
        try:
            r = self.http.post(f"{replica.url}{path}", json=body)
        except httpx.HTTPError as exc:
            self.mark_down(replica, f"it stopped answering ({type(exc).__name__})")
            raise ReplicaError(f"The replica at {replica.url} stopped answering; ask again.") from exc
        if r.status_code != 200:
            try:
                message = (r.json().get("error") or {}).get("message") or r.text
            except ValueError:
                message = r.text
            raise ReplicaError(f"The replica at {replica.url} refused: {message[:200]}")
        return r.json()

    def restore(self, replica: Replica, slot: int, filename: str) -> dict:
        """``POST /slots/{slot}?action=restore``; on a failure the slot is erased before anything reuses it
        (llama.cpp #27068: a failed restore can leave the slot's cells half written).

        Returns:
            The server's answer (``n_restored``, ``timings.restore_ms``).

        Raises:
            ReplicaError: the restore was refused (a version or layout mismatch, a file cut short).
        """
        try:
            return self._post(replica, f"/slots/{slot}?action=restore", {"filename": filename})
        except ReplicaError:
            if replica.up:
                try:
                    self.erase(replica, slot)
                except ReplicaError as exc:
                    log.warning("could not erase slot %d of %s after a failed restore: %s", slot, replica.url, exc)
            raise

    def save(self, replica: Replica, slot: int, filename: str) -> dict:
        """``POST /slots/{slot}?action=save`` (never called on an empty slot: llama.cpp #14434)."""
        return self._post(replica, f"/slots/{slot}?action=save", {"filename": filename})

    def erase(self, replica: Replica, slot: int) -> dict:
        """``POST /slots/{slot}?action=erase``."""
        return self._post(replica, f"/slots/{slot}?action=erase", {})

    def slot_has_task(self, replica: Replica, slot: int) -> bool:
        """Whether ``/slots`` shows slot ``slot`` has run a task since the replica started (False after a
        restart, or when the replica does not say)."""
        try:
            slots = self.http.get(f"{replica.url}/slots", timeout=3.0).json()
            return any(s.get("id") == slot and "id_task" in s for s in slots)
        except (httpx.HTTPError, ValueError):
            return False

    # completions --------------------------------------------------------------------------
    def complete(self, replica: Replica, slot: int, tokens: list[int], sampling: Sampling, stats: StreamStats,
                 n_predict: int | None = None) -> Iterator[str]:
        """Stream ``POST /completion`` of token ids on one slot (``cache_prompt``: the slot's matching tokens are
        reused), filling ``stats`` (``server_cached_tokens`` from ``timings.cache_n``).

        Args:
            replica / slot: where.
            tokens: the whole prompt, token ids.
            sampling: the answer's sampling.
            stats: filled as the answer streams.
            n_predict: tokens to generate (default ``sampling.max_tokens``; 0 evaluates the prompt only).

        Yields:
            Text pieces.

        Raises:
            ReplicaError: the replica refused, or died mid-answer (then it is marked down; what streamed stays).
        """
        body = {"prompt": tokens, "id_slot": slot, "cache_prompt": True, "stream": n_predict != 0,
                "n_predict": sampling.max_tokens if n_predict is None else n_predict,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
                "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty, "ignore_eos": sampling.ignore_eos,
                "timings_per_token": False, "return_tokens": False}
        if sampling.seed >= 0:
            body["seed"] = sampling.seed
        stats.prompt_tokens = len(tokens)
        try:
            if n_predict == 0:
                self._event(self._post(replica, "/completion", body), stats)
                return
            with self.http.stream("POST", f"{replica.url}/completion", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    raise ReplicaError(f"The replica at {replica.url} refused the question: {r.text[:200]}")
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    piece = self._event(event, stats)
                    if not event.get("stop") and stats.first_token_at is None:  # a token, even one with no text
                        stats.first_token_at = time.perf_counter()
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            self.mark_down(replica, f"it stopped answering mid-answer ({type(exc).__name__})")
            raise ReplicaError(f"The replica at {replica.url} stopped answering; the answer so far is kept, "
                               "ask again and another replica answers.") from exc
        finally:
            stats.finished_at = time.perf_counter()

    @staticmethod
    def _event(event: dict, stats: StreamStats) -> str:
        """Apply one ``/completion`` event to ``stats``; return its text."""
        timings = event.get("timings") or {}
        if "cache_n" in timings:
            stats.server_cached_tokens = stats.reused_tokens = int(timings["cache_n"])
        if event.get("stop"):
            stats.completion_tokens = int(event.get("tokens_predicted") or stats.completion_tokens)
            stats.stop_reason = ("eos" if event.get("stop_type") in ("eos", "word") else
                                 "length" if event.get("stop_type") == "limit" else str(event.get("stop_type") or "eos"))
        else:  # one streamed token (its text may be empty: a control token, part of a character)
            stats.completion_tokens += 1
        return event.get("content") or ""
