"""Route apps that build their model with ``init_chat_model`` or a factory function, unedited.

Many LangGraph apps never take a model object from outside: they call LangChain's
``init_chat_model("openai:gpt-4o-mini", ...)`` (often with ``configurable_fields``) or a
factory of their own (``app.models.get_model()``) where the graph is built. Neither lets
``router.chat_model()`` in. This module puts it in with one line, before the app is imported::

    router.route_init_chat_model()                       # every init_chat_model model is routed
    steproute.route_factory("app.models:get_model", router)   # a factory of the app's own

LangChain has no registration point for chat-model providers (``init_chat_model`` accepts only
the providers of its built-in table, in 1.x as in its main branch), so routing it means
patching. The patch is one module attribute, ``langchain.chat_models.base._init_chat_model_helper``,
the function through which both ``init_chat_model`` and its configurable models
(``configurable_fields``, ``config_prefix``) build every model; it is looked up at call time,
so ``init_chat_model`` imported before the line is routed too, and configurable models built
before it are routed from their next call. The patch is explicit (a :class:`ModelPatch` you
hold), reversible (``uninstall()`` or a ``with`` block), idempotent (installing twice patches
once) and thread-safe (the routing in force is read at each call).

What the app passed that the router can honour is kept (``temperature``, ``max_tokens``,
``stop``, ``timeout``, ``max_retries``, ``top_p``, ``seed``, the penalties, ``model_kwargs``,
LangChain's ``callbacks``/``tags``/``metadata``/``rate_limiter``); the model name and the
provider's settings (``base_url``, ``api_key``, ...) are not: the router chooses the model. Each
distinct origin says so once in the ``steproute`` log, naming the parameters, never their values.
A model string ``"steproute:<step>"`` (or ``model_provider="steproute"``) names the step.

Example:
    >>> from steproute import RouterConfig, StepRouter
    >>> from langchain.chat_models import init_chat_model
    >>> router = StepRouter(RouterConfig(
    ...     tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "hi"}]}},
    ...     default="fast"))
    >>> with router.route_init_chat_model():
    ...     model = init_chat_model("openai:gpt-4o", temperature=0)
    ...     model.invoke("hello").response_metadata["model_name"]
    'openai/gpt-4o-mini'
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from steproute.errors import StepRouteError, shown

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["ModelPatch", "SupportsChatModel", "route_factory", "route_init_chat_model", "routed_fields"]

logger = logging.getLogger("steproute")

PROVIDER = "steproute"
"""The provider name that makes a model string name a step: ``"steproute:plan"``."""

_LANGCHAIN_MODULE = "langchain.chat_models.base"
_HELPER = "_init_chat_model_helper"

# the app's parameter → the RoutedChatModel field that honours it
_KEPT = {
    "temperature": "temperature", "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens", "stop": "stop", "stop_sequences": "stop", "timeout": "timeout",
    "request_timeout": "timeout", "max_retries": "max_retries", "streaming": "streaming",
}
# sent to LiteLLM with every call, as OpenAI parameters
_TO_MODEL_KWARGS = frozenset({"top_p", "seed", "frequency_penalty", "presence_penalty"})
# BaseChatModel's own fields, which every chat model (and so the routed one) has
_LANGCHAIN_FIELDS = frozenset({"callbacks", "tags", "metadata", "rate_limiter", "cache", "verbose",
                               "disable_streaming", "name"})
_REPLACES_KEY = "steproute_replaces"
"""Metadata key on the routed model naming what it stands for (shows in LangChain traces)."""
_NOTED_MAX = 1024
_MODEL_NAME = re.compile(r"[\w.:/@ -]{1,100}")
_KEY_LIKE = re.compile(r"(?i)(^|[:/])(sk|pk|rk|ghp|gho|xox[abpr]|AKIA)[-_]")


class SupportsChatModel(Protocol):
    """What the patches need of a router: ``chat_model(**fields)`` (a :class:`~steproute.StepRouter`)."""

    def chat_model(self, **kwargs: Any) -> BaseChatModel: ...


def routed_fields(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Split a chat model's constructor parameters into routed-model fields, kept and ignored names.

    Example:
        >>> fields, kept, ignored = routed_fields({"temperature": 0, "base_url": "http://x", "seed": 7})
        >>> fields, kept, ignored
        ({'temperature': 0, 'model_kwargs': {'seed': 7}}, ['seed', 'temperature'], ['base_url'])
    """
    fields: dict[str, Any] = {}
    model_kwargs: dict[str, Any] = {}
    kept: list[str] = []
    ignored: list[str] = []
    for name, value in params.items():
        if name in ("model", "model_provider") or (value is None and (name in _KEPT or name in _TO_MODEL_KWARGS)):
            continue  # the model is the router's; an unset setting is neither kept nor ignored
        if name in _KEPT:
            target = _KEPT[name]
            if target == "stop" and isinstance(value, str):
                value = [value]
            if target == "timeout" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                ignored.append(name)  # an httpx.Timeout or a (connect, read) pair: no single number
                continue
            fields[target] = value
        elif name in _TO_MODEL_KWARGS:
            model_kwargs[name] = value
        elif name == "model_kwargs" and isinstance(value, Mapping):
            model_kwargs.update(value)
        elif name in _LANGCHAIN_FIELDS:
            fields[name] = value
        else:
            ignored.append(name)
            continue
        kept.append(name)
    if model_kwargs:
        fields["model_kwargs"] = model_kwargs
    return fields, sorted(kept), sorted(ignored)


class ModelPatch:
    """One installed routing of ``init_chat_model`` or of a factory; undo it with :meth:`uninstall`.

    While several are installed on the same target, the latest one routes; the original comes
    back when the last is uninstalled. Use it as a context manager to route within a block.

    Example:
        >>> patch = router.route_init_chat_model()        # doctest: +SKIP
        >>> patch.targets                                  # doctest: +SKIP
        ('langchain.chat_models.base:_init_chat_model_helper',)
        >>> patch.uninstall()                              # doctest: +SKIP
    """

    def __init__(self, kind: str, router: SupportsChatModel, step: str | Callable[..., str | None] | None,
                 origin: str) -> None:
        self.kind = kind
        """``"init_chat_model"`` or ``"factory"``."""
        self.router = router
        self.step = step
        self.origin = origin
        """What is routed, as the log names it: ``init_chat_model`` or ``module:function``."""
        self._slot: _Slot | None = None
        self._noted: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        """Whether this routing is still installed."""
        return self._slot is not None

    @property
    def targets(self) -> tuple[str, ...]:
        """Every ``module:name`` replaced for this routing (the factory's imports included)."""
        slot = self._slot
        return tuple(f"{m.__name__}:{n}" for m, n in slot.places) if slot is not None else ()

    def uninstall(self) -> None:
        """Stop this routing; the original comes back when no other routing of its target is left."""
        _detach(self)

    def __enter__(self) -> ModelPatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.uninstall()

    def __repr__(self) -> str:
        state = "installed" if self.installed else "uninstalled"
        return f"ModelPatch({self.kind}, {self.origin!r}, {state})"

    def _build(self, origin: str, step: str | None, params: Mapping[str, Any], positional: int = 0,
              named: bool = False) -> BaseChatModel:
        """The routed model standing for what the app asked for (``origin`` with ``params``);
        ``named``: the app asked for steproute itself (``"steproute:<step>"``)."""
        fields, kept, ignored = routed_fields(params)
        if positional:
            ignored = [*ignored, f"{positional} positional argument{'s' if positional > 1 else ''}"]
        self._note(origin, kept, ignored, named)
        metadata = dict(fields.get("metadata") or {})
        metadata[_REPLACES_KEY] = origin
        fields["metadata"] = metadata
        if step:
            fields["step"] = step
        return self.router.chat_model(**fields)

    def _note(self, origin: str, kept: list[str], ignored: list[str], named: bool) -> None:
        key = (origin, tuple(kept), tuple(ignored))
        with self._lock:
            if key in self._noted or len(self._noted) >= _NOTED_MAX:
                return
            self._noted.add(key)
        what = "the router chooses the model" if named else \
            "the router chooses the model (the app's model name is ignored)"
        logger.log(logging.WARNING if ignored else logging.INFO, "steproute routes %s: %s; kept: %s; ignored: %s",
                   origin, what, ", ".join(kept) or "nothing", ", ".join(ignored) or "nothing")


class _Slot:
    """One patched callable: the original, where it was replaced, and the routings in force."""

    def __init__(self, key: str, original: Callable[..., Any], places: list[tuple[ModuleType, str]]) -> None:
        self.key = key
        self.original = original
        self.places = places
        self.patches: list[ModelPatch] = []
        self.replacement: Callable[..., Any] | None = None

    def current(self) -> ModelPatch | None:
        patches = self.patches  # replaced, never mutated in place: a consistent snapshot without a lock
        return patches[-1] if patches else None


_LOCK = threading.RLock()
_SLOTS: dict[str, _Slot] = {}


def _attach(patch: ModelPatch, key: str, find: Callable[[], tuple[Callable[..., Any], list[tuple[ModuleType, str]]]],
            wrap: Callable[[_Slot], Callable[..., Any]]) -> ModelPatch:
    with _LOCK:
        slot = _SLOTS.get(key)
        if slot is None:
            original, places = find()
            slot = _Slot(key, original, places)
            slot.replacement = wrap(slot)
            for module, name in places:
                setattr(module, name, slot.replacement)
            _SLOTS[key] = slot
        slot.patches = [*slot.patches, patch]
        patch._slot = slot
    return patch


def _detach(patch: ModelPatch) -> None:
    with _LOCK:
        slot = patch._slot
        if slot is None:
            return
        patch._slot = None
        slot.patches = [p for p in slot.patches if p is not patch]
        if slot.patches:
            return
        del _SLOTS[slot.key]
        for module, name in slot.places:
            if getattr(module, name, None) is slot.replacement:
                setattr(module, name, slot.original)
            else:
                logger.warning("steproute left %s:%s alone on uninstall: something else replaced it since",
                               module.__name__, name)


# -- init_chat_model ------------------------------------------------------------------------------


def route_init_chat_model(router: SupportsChatModel, *, step: str | None = None) -> ModelPatch:
    """Route every model LangChain's ``init_chat_model`` builds through ``router``.

    Covers ``init_chat_model`` however it was imported, fixed models built after this call,
    configurable models (``configurable_fields``, ``config_prefix``) from their next call, and
    ``create_agent(model="provider:model")``. ``step`` names the step of every such model
    (else it comes from the graph: a ``step()`` hint, the agent, the node); a model string
    ``"steproute:<step>"`` names it per model. A fixed model built *before* the call is a
    provider's object already and is not routed: run this line before importing the app.

    Raises:
        ImportError: ``langchain`` is not installed.
        StepRouteError: the installed ``langchain`` builds models another way than this patch knows.

    Example:
        >>> patch = route_init_chat_model(router)   # doctest: +SKIP
        >>> import my_app   # builds init_chat_model models    # doctest: +SKIP
        >>> patch.uninstall()                        # doctest: +SKIP
    """
    patch = ModelPatch("init_chat_model", router, step, "init_chat_model")
    return _attach(patch, f"{_LANGCHAIN_MODULE}:{_HELPER}", _find_helper, _wrap_helper)


def _find_helper() -> tuple[Callable[..., Any], list[tuple[ModuleType, str]]]:
    try:
        base = importlib.import_module(_LANGCHAIN_MODULE)
    except ImportError as exc:
        raise ImportError("routing init_chat_model needs the `langchain` package: "
                          "pip install 'steproute[agents]'") from exc
    helper = getattr(base, _HELPER, None)
    users = [getattr(base, "init_chat_model", None), getattr(getattr(base, "_ConfigurableModel", None), "_model", None)]
    if not callable(helper) or not all(_HELPER in getattr(getattr(f, "__code__", None), "co_names", ()) for f in users):
        raise StepRouteError(
            f"cannot route init_chat_model with langchain {_version('langchain')}: it no longer builds models "
            f"through {_LANGCHAIN_MODULE}.{_HELPER}; pass router.chat_model() to the app instead")
    return helper, [(base, _HELPER)]


def _wrap_helper(slot: _Slot) -> Callable[..., Any]:
    original = slot.original

    @functools.wraps(original)
    def routed_init_chat_model(model: str | None = None, *, model_provider: str | None = None, **kwargs: Any) -> Any:
        patch = slot.current()
        if patch is None:  # uninstalled while a caller held this function
            return original(model, model_provider=model_provider, **kwargs)
        named, step, origin = _step_of(model, model_provider)
        return patch._build(f"init_chat_model({origin})", step or _fixed(patch.step), kwargs, named=named)

    routed_init_chat_model.__steproute_patch__ = True  # type: ignore[attr-defined]
    return routed_init_chat_model


def _step_of(model: str | None, provider: str | None) -> tuple[bool, str | None, str]:
    """Whether the app named steproute, the step it named (``steproute:<step>``), and the model as
    the log shows it."""
    name = model or ""
    if not provider and ":" in name:
        prefix, rest = name.split(":", 1)
        if prefix.replace("-", "_").lower() == PROVIDER:
            provider, name = PROVIDER, rest
    if provider and provider.replace("-", "_").lower() == PROVIDER:
        return True, (name or None), _label(f"{PROVIDER}:{name}" if name else PROVIDER)
    return False, None, _label(f"{provider}:{name}" if provider and name else name or provider or "no model")


def _label(model: str) -> str:
    """A model string as the log shows it: quoted when it looks like one, else only its length."""
    if _MODEL_NAME.fullmatch(model) and not _KEY_LIKE.search(model):
        return repr(model)
    return f"a {len(model)}-character model name"


def _fixed(step: str | Callable[..., str | None] | None) -> str | None:
    return step if isinstance(step, str) else None


# -- factories ------------------------------------------------------------------------------------


def route_factory(target: str | Callable[..., Any], router: SupportsChatModel, *,
                  step: str | Callable[..., str | None] | None = None) -> ModelPatch:
    """Make an app's own model factory return a routed model instead, without editing the app.

    ``target`` is ``"package.module:function"`` (or the function itself). The function is
    replaced in its module and in every loaded module that imported it by name
    (``from app.models import get_model``); the factory's keyword arguments the router can
    honour are kept (``temperature``, ``max_tokens``, ...), the rest are ignored and named
    once in the log. ``step`` names the step of the models it returns: a string, or a
    function of the factory's own arguments (``step=lambda role, **_: role``).
    Run it before the app calls the factory (usually: before importing the graph).

    Example:
        >>> with route_factory("app.models:get_model", router):   # doctest: +SKIP
        ...     from app.graph import graph
        ...     graph.invoke({"messages": [("user", "hi")]})
    """
    module_name, name = _split_target(target)
    key = f"{module_name}:{name}"
    patch = ModelPatch("factory", router, step, key)

    def find() -> tuple[Callable[..., Any], list[tuple[ModuleType, str]]]:
        module = importlib.import_module(module_name)
        original = getattr(module, name, None)
        if not callable(original):
            raise StepRouteError(f"route_factory: {shown(key)} is not a function")
        return original, [(module, name), *_imported_copies(original, module, name)]

    return _attach(patch, key, find, lambda slot: _wrap_factory(slot, key))


def _split_target(target: str | Callable[..., Any]) -> tuple[str, str]:
    if callable(target) and not isinstance(target, str):
        module_name, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
        if not module_name or "." in qualname or "<" in qualname:
            raise StepRouteError("route_factory: give a module-level function, or 'package.module:function'")
        return module_name, qualname
    module_name, sep, name = str(target).partition(":")
    if not sep or not all(part.isidentifier() for part in module_name.split(".")) or not name.isidentifier():
        raise StepRouteError(f"route_factory: expected 'package.module:function', got {shown(target)}")
    return module_name, name


def _imported_copies(original: Callable[..., Any], home: ModuleType, home_name: str) -> list[tuple[ModuleType, str]]:
    """Module globals elsewhere that hold the same function (``from app.models import get_model``)."""
    found: list[tuple[ModuleType, str]] = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(module, ModuleType) or not isinstance(namespace, dict):
            continue
        try:
            items = list(namespace.items())
        except RuntimeError:  # a module mutating its globals on another thread
            continue
        found.extend((module, n) for n, v in items
                     if v is original and not (module is home and n == home_name) and not n.startswith("__"))
    return found


def _wrap_factory(slot: _Slot, key: str) -> Callable[..., Any]:
    original = slot.original

    @functools.wraps(original)
    def routed_factory(*args: Any, **kwargs: Any) -> Any:
        patch = slot.current()
        if patch is None:
            return original(*args, **kwargs)
        step = patch.step(*args, **kwargs) if callable(patch.step) else patch.step
        return patch._build(f"{key}()", step, kwargs, positional=len(args))

    routed_factory.__steproute_patch__ = True  # type: ignore[attr-defined]
    return routed_factory


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(unknown version)"
