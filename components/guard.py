"""One gate for every request: typed arguments at each named endpoint, and no unhandled exception reaching a user.

``api(fn, api_name, ...)`` registers a named endpoint (``gr.api``) behind a check of each argument against the
function's own type hints (pydantic's ``TypeAdapter``, lax mode: ``"10"`` is the integer 10, ``"ten"`` is refused),
the ranges given (``k`` 1 to 100), lone surrogates in any text (broken Unicode that nothing downstream can encode)
and the number of arguments. A wrong argument gets one sentence naming it; the function never runs. MCP tools are
the same functions, so they are checked the same way.

``guard(demo)`` wraps every handler of the app, the UI's and the API's, so that an exception the code did not turn
into a sentence itself is logged with its traceback (``logs/app.log`` and the current run's log, which the Logs
panel shows) under a short id, and the user gets one sentence with that id, never Python's exception text or a
server path (OWASP ASVS 4.0 V7.4.1: a generic message with a unique id support can find).
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import gradio as gr
from gradio.utils import is_special_typed_parameter
from pydantic import TypeAdapter, ValidationError

log = logging.getLogger("kvcache_chatbot.errors")


def kind_of(value: Any) -> str:
    """A JSON value's kind in words ("null", "text", "a list", ...), never the value itself (it may be huge, or
    something a log or a screen should not repeat)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def describe(hint: Any) -> str:
    """What a type hint accepts, in words: ``list[str] | None`` -> "a list of text values, or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [describe(a) for a in args if a is not type(None)]
        return " or ".join(named) + (", or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {describe(args[0]) if args else 'values'}"
    words = {str: "text", int: "a whole number", float: "a number", bool: "true or false", dict: "an object"}
    if hint in words:
        return words[hint]
    return "a file (gradio_client's handle_file)" if getattr(hint, "__name__", "") == "FileData" else str(hint)


def _surrogate_in(value: Any) -> bool:
    """Whether a lone UTF-16 surrogate hides anywhere in a JSON value (strings, list items, object keys/values)."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list | tuple):
        return any(_surrogate_in(v) for v in value)
    if isinstance(value, dict):
        return any(_surrogate_in(k) or _surrogate_in(v) for k, v in value.items())
    return False


def refuse(sentence: str) -> gr.Error:
    """A ``gr.Error`` carrying one sentence, without Gradio printing a traceback for it."""
    return gr.Error(sentence, print_exception=False)


class Checker:
    """The argument check of one endpoint function.

    Args:
        fn: the endpoint (fully type-hinted, as ``gr.api`` requires).
        ranges: inclusive ``(low, high)`` per numeric argument, e.g. ``{"k": (1, 100)}``.
    """

    def __init__(self, fn: Callable, ranges: dict[str, tuple[float, float]] | None = None):
        self.signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        self.ranges = ranges or {}
        self.adapters = {name: (hints[name], TypeAdapter(hints[name])) for name in self.signature.parameters
                         if name in hints and not is_special_typed_parameter(name, hints)
                         and hints[name] is not gr.Progress}
        self.takes = ", ".join(self.adapters)

    def __call__(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        """The arguments, each validated (and coerced in lax mode: ``"10"`` becomes 10).

        Raises:
            gr.Error: one sentence naming the first argument that is wrong, missing or extra.
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise refuse(f"This endpoint takes {self.takes or 'no arguments'}; "
                         f"the call had {'too many' if 'too many' in str(exc) or 'unexpected' in str(exc) else 'missing'}"
                         " arguments.") from None
        for name, value in bound.arguments.items():
            if name not in self.adapters:
                continue
            hint, adapter = self.adapters[name]
            if _surrogate_in(value):
                raise refuse(f"The argument `{name}` holds a broken character (a lone UTF-16 surrogate); send valid "
                             "Unicode text.")
            try:
                value = adapter.validate_python(value)
            except ValidationError:
                raise refuse(f"The argument `{name}` must be {describe(hint)}; got {kind_of(value)}.") from None
            low, high = self.ranges.get(name, (None, None))
            if low is not None and value is not None and not low <= value <= high:
                raise refuse(f"The argument `{name}` must be from {low:g} to {high:g}; got {value:g}.")
            bound.arguments[name] = value
        return bound


def checked(fn: Callable, ranges: dict[str, tuple[float, float]] | None = None) -> Callable:
    """``fn`` behind its ``Checker``; a generator function stays one (Gradio streams it) and the signature, type
    hints and docstring stay ``fn``'s (``functools.wraps``), so the API docs and MCP schema are unchanged."""
    check = Checker(fn, ranges)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            bound = check(args, kwargs)
            yield from fn(*bound.args, **bound.kwargs)

        stream._checked = True  # type: ignore[attr-defined]
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        bound = check(args, kwargs)
        return fn(*bound.args, **bound.kwargs)

    call._checked = True  # type: ignore[attr-defined]
    return call


def api(fn: Callable, api_name: str, ranges: dict[str, tuple[float, float]] | None = None, **options) -> None:
    """Register ``fn`` as the named endpoint ``api_name`` (``gr.api``) behind its argument check (``checked``).

    Args:
        fn: the endpoint function, fully type-hinted; ``Literal`` hints name the accepted values.
        api_name: the endpoint's name.
        ranges: inclusive bounds of numeric arguments.
        options: passed to ``gr.api`` (``concurrency_id``, ``concurrency_limit``, ...).
    """
    gr.api(checked(fn, ranges), api_name=api_name, **options)


def unexpected(name: str, exc: BaseException) -> gr.Error:
    """Log an exception no handler turned into a sentence, with its traceback, under a new id; return the sentence
    the user sees instead (the id, and where an admin finds it)."""
    error_id = secrets.token_hex(4)
    log.error("unhandled error %s in %s", error_id, name, exc_info=(type(exc), exc, exc.__traceback__))
    return refuse(f"Something went wrong on the server (error {error_id}); it is logged, and an admin can find it "
                  "in the Logs panel. Try again, or report the id.")


PROFILE = "oauth_profile"  # the parameter ``logged`` adds, and the attribute of the request it is kept on


def _request_index(fn: Callable) -> int | None:
    """The position of ``fn``'s ``gr.Request`` parameter, or None when it takes none."""
    hints = typing.get_type_hints(fn)
    for i, name in enumerate(inspect.signature(fn).parameters):
        if hints.get(name) in (gr.Request, gr.Request | None):
            return i
    return None


def _with_profile(wrapper: Callable, fn: Callable) -> None:
    """Give ``wrapper`` ``fn``'s signature plus a last parameter typed ``gr.OAuthProfile | None``, which Gradio fills
    with the Hugging Face user signed in through ``gr.LoginButton`` (Gradio's public way to read OAuth)."""
    signature = inspect.signature(fn)
    extra = inspect.Parameter(PROFILE, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                              annotation=gr.OAuthProfile | None)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
    wrapper.__annotations__ = {**typing.get_type_hints(fn), PROFILE: gr.OAuthProfile | None}


def _keep_profile(args: tuple, kwargs: dict, at: int | None, n: int) -> tuple[tuple, dict]:
    """Take the profile Gradio passed after ``fn``'s ``n`` parameters off the arguments and keep it on the request
    (at position ``at``), where ``common.oauth_username`` reads it."""
    if at is None:
        return args, kwargs
    profile = kwargs.pop(PROFILE, None)
    if len(args) == n + 1:  # Gradio passes every argument positionally, the profile last
        *args, profile = args
    request = args[at] if len(args) > at else None
    if request is not None:
        setattr(request, PROFILE, profile)
    return tuple(args), kwargs


def logged(fn: Callable, name: str) -> Callable:
    """``fn`` with every exception other than a ``gr.Error`` logged and replaced by ``unexpected``'s sentence; a
    generator function stays one. A handler that takes the ``gr.Request`` also gets the signed-in Hugging Face
    profile (``_with_profile``), kept on that request. Async functions are returned as they are (the app has
    none)."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or getattr(fn, "_guarded", False):
        return fn
    at, n = _request_index(fn), len(inspect.signature(fn).parameters)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            args, kwargs = _keep_profile(args, kwargs, at, n)
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 (the point: nothing unhandled reaches the user)
                raise unexpected(name, exc) from None

        wrapper = stream
    else:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            args, kwargs = _keep_profile(args, kwargs, at, n)
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001
                raise unexpected(name, exc) from None

        wrapper = call
    if at is not None:
        _with_profile(wrapper, fn)
    wrapper._guarded = True  # type: ignore[attr-defined]
    return wrapper


def arity(block_fn, inputs: list) -> list:
    """A named endpoint's inputs with the defaults of the arguments a raw HTTP call left out (``gradio_client``
    fills them itself; Gradio would refuse the call with its own exception), or one sentence for a call with too
    many arguments or without one that has no default.

    Raises:
        gr.Error: the sentence, naming the endpoint's arguments.
    """
    if not getattr(block_fn.fn, "_checked", False):
        return inputs
    signature = inspect.signature(block_fn.fn)
    hints = typing.get_type_hints(block_fn.fn)
    params = [p for name, p in signature.parameters.items()
              if not is_special_typed_parameter(name, hints) and hints.get(name) is not gr.Progress]
    names = ", ".join(p.name for p in params) or "no arguments"
    if len(inputs) > len(params):
        takes = f"{len(params)} argument{'s' * (len(params) != 1)} ({names})" if params else "no arguments"
        raise refuse(f"{block_fn.api_name} takes {takes}; the call sent {len(inputs)}.")
    missing = params[len(inputs):]
    without = [p.name for p in missing if p.default is inspect.Parameter.empty]
    if without:
        raise refuse(f"{block_fn.api_name} needs the argument `{without[0]}` (it takes {names}).")
    return list(inputs) + [p.default for p in missing]


def wrong_input(block_fn, inputs: list) -> gr.Error:
    """The sentence for an input Gradio itself could not take (a file argument given as text, say), naming the
    first argument whose component refuses its value."""
    for block, value in zip(block_fn.inputs, inputs):
        model = getattr(block, "data_model", None)
        if model is None or value is None:
            continue
        try:
            model.model_validate(value, context={"validate_meta": True})
        except Exception:  # noqa: BLE001 (any refusal names this argument)
            label = getattr(block, "label", None) or "input"
            wanted = "a file (gradio_client's handle_file)" if "File" in model.__name__ else "of another kind"
            return refuse(f"The argument `{label}` must be {wanted}; got {kind_of(value)}.")
    return refuse(f"An argument of {block_fn.api_name or 'this call'} is not of the kind it takes; see the API page "
                  "for each argument's type.")


def guard(demo: gr.Blocks) -> None:
    """Wrap every handler of ``demo`` (UI events and named endpoints) with ``logged``, Gradio's own reading of a
    call's inputs with ``arity`` and ``wrong_input``, and its calling of a handler (where it builds the OAuth
    profile, say) with ``unexpected``, so that neither a handler nor Gradio answers a call with an unhandled
    exception; call once, after the last event is wired."""
    for block_fn in demo.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = logged(block_fn.fn, block_fn.api_name or block_fn.name or "handler")
    read = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        inputs = arity(block_fn, inputs)
        try:
            return await read(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 (Gradio's own refusal of an input: a sentence instead)
            log.info("refused the inputs of %s: %s", block_fn.api_name or block_fn.name, type(exc).__name__)
            raise wrong_input(block_fn, inputs) from None

    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]
    run = demo.call_function

    async def call_function(block_fn, *args, **kwargs):
        try:
            return await run(block_fn, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 (Gradio's own work around a handler, e.g. its OAuth profile)
            name = getattr(block_fn, "api_name", None) or getattr(block_fn, "name", None) or "handler"
            raise unexpected(name, exc) from None

    demo.call_function = call_function  # type: ignore[method-assign]
