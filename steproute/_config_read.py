"""Reading a configuration file safely: bounded size, regular files only, YAML with alias limits.

A configuration is small. A file that is not one (a FIFO, ``/dev/zero``, a directory, a
multi-megabyte file) is refused before it is read, and YAML aliases cannot expand a short
file into a huge tree (an "alias bomb") or into a cycle. Every refusal is a
:class:`~steproute.errors.ConfigError` naming the file (and the line, for YAML).

Example:
    >>> parse_yaml("a: &x [1, 2]\\nb: *x\\n", "inline.yaml")
    {'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from steproute.errors import ConfigError, ConfigProblem, shown

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
FROM_ENV: ContextVar[frozenset[str]] = ContextVar("steproute_config_env_values", default=frozenset())
"""The values read from environment variables while a configuration is built: never shown."""


class EnvironmentOverride:
    """Where ``${VAR}`` references are read from while a configuration is checked (``steproute
    check --env FILE`` / ``--placeholders``): ``environ`` instead of the process environment and,
    with ``placeholders``, an unset variable kept as its own ``${VAR}`` text and noted in
    ``unset`` instead of failing the file."""

    def __init__(self, environ: Mapping[str, str], placeholders: bool = False) -> None:
        self.environ, self.placeholders = environ, placeholders
        self.unset: list[ConfigProblem] = []


ENVIRONMENT: ContextVar[EnvironmentOverride | None] = ContextVar("steproute_config_environment", default=None)
"""Set by ``steproute check`` only; ``None``: ``os.environ``, unset variables are errors."""

__all__ = [
    "CYCLE",
    "DEEP",
    "ENVIRONMENT",
    "FROM_ENV",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_NESTING",
    "MAX_YAML_VALUES",
    "EnvResolver",
    "EnvStr",
    "EnvironmentOverride",
    "config_key",
    "format_path",
    "looks_secret",
    "parse_toml",
    "parse_yaml",
    "read_config_text",
    "shown_config_value",
]

MAX_CONFIG_BYTES = 4 << 20
"""A configuration file larger than this (4 MiB) is refused unread."""
MAX_YAML_VALUES = 100_000
"""The values a YAML document may hold once its aliases are expanded."""
MAX_NESTING = 64
"""How deeply YAML or TOML collections may nest."""


def _fail(source: str, message: str, where: str = "") -> ConfigError:
    return ConfigError([ConfigProblem(where, message)], source=source)


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of a configuration file: a regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8."""
    file = Path(path)
    source = str(file)
    try:
        info = os.stat(file)
        if not stat.S_ISREG(info.st_mode):
            raise _fail(source, "not a regular file (a directory, device or pipe); give a configuration file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise _fail(source, f"the file is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a configuration")
        with open(file, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise _fail(source, f"cannot read file: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _fail(source, f"the file is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(source, "file is not UTF-8 text") from None


def parse_toml(text: str, source: str) -> Any:
    """TOML text as data (``ConfigError`` on a syntax error or nesting past :data:`MAX_NESTING`)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"TOML syntax error: {exc}") from None
    except RecursionError:
        raise _fail(source, f"values are nested more than {MAX_NESTING} deep") from None
    if _depth(data) > MAX_NESTING:
        raise _fail(source, f"values are nested more than {MAX_NESTING} deep")
    return data


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_NESTING or not isinstance(value, (dict, list)):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(v, level + 1) for v in children), default=level + 1)


def _loader_class(source: str, duplicates: list[ConfigProblem]) -> type:
    import yaml
    from yaml.nodes import MappingNode, SequenceNode

    class Loader(yaml.SafeLoader):
        """SafeLoader that bounds the expanded size of the document and refuses recursive aliases."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._sizes: dict[int, int] = {}
            self._level = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                target = self.anchors.get(event.anchor)
                if isinstance(target, (MappingNode, SequenceNode)) and target.end_mark is None:
                    line = event.start_mark.line + 1
                    raise _fail(source, "recursive alias: it refers to a value that contains it; "
                                        "YAML aliases must not form a cycle", f"line {line}")
            self._level += 1
            if self._level > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise _fail(source, f"values are nested more than {MAX_NESTING} deep", f"line {mark.line + 1}")
            try:
                node = super().compose_node(parent, index)
            finally:
                self._level -= 1
            size = self._sizes.get(id(node))
            if size is None:
                if isinstance(node, SequenceNode):
                    size = 1 + sum(self._sizes.get(id(child), 1) for child in node.value)
                elif isinstance(node, MappingNode):
                    size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
                else:
                    size = 1
                self._sizes[id(node)] = size
            if size > MAX_YAML_VALUES:
                raise _fail(source, f"aliases expand this value to more than {MAX_YAML_VALUES:,} values "
                                    "(an alias bomb?)", f"line {node.start_mark.line + 1}")
            return node

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the constructor below says so
                continue
            if first is not None:
                duplicates.append(ConfigProblem(
                    f"line {line}", f"duplicate key {shown(key)} (first defined on line {first})"))
            else:
                seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as data; ``ConfigError`` on a syntax error, a duplicate key, a recursive alias,
    aliases expanding past :data:`MAX_YAML_VALUES` values or nesting past :data:`MAX_NESTING`."""
    import yaml

    duplicates: list[ConfigProblem] = []
    loader = None
    try:
        loader = _loader_class(source, duplicates)(text)
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _fail(source, f"YAML syntax error: {exc.problem}", where) from None
    except yaml.YAMLError as exc:
        raise _fail(source, f"YAML error: {type(exc).__name__}") from None
    except RecursionError:
        raise _fail(source, f"values are nested more than {MAX_NESTING} deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if duplicates:
        raise ConfigError(duplicates, source=source)
    return data


# -- values: environment references, and how errors show them ------------------------------


_ENV = "a value from the environment"
_PLAIN_KEY = re.compile(r"(?=.{1,32}$)[a-z]{1,12}(?:_[a-z]{1,12})*")


class EnvStr(str):
    """A configuration string that held a ``${VAR}`` reference (held as a secret when it is a
    deployment parameter; never shown in an error)."""


def shown_config_value(value: object) -> str:
    """:func:`~steproute.errors.shown`, and never a value that came from the environment."""
    if isinstance(value, EnvStr) or (isinstance(value, str) and value in FROM_ENV.get()):
        return _ENV
    return shown(value)


def looks_secret(value: str) -> bool:
    """Whether a string could be a credential (what :func:`~steproute.errors.shown` hides).

    Example:
        >>> looks_secret("sk-live-7f3c9a1b2d4e6f80"), looks_secret("openai/gpt-4o-mini")
        (True, False)
    """
    return shown(value[:32]) != repr(value[:32])


def config_key(name: object) -> str:
    """A key as a configuration path shows it: itself when it looks like a name, else its length."""
    said = shown_config_value(name)
    if isinstance(name, str) and (said == repr(name) or (said != _ENV and _PLAIN_KEY.fullmatch(name))):
        return name  # api_key, token_url: field names without a digit are not credentials
    return f"[{said}]"


CYCLE = "the configuration refers to itself"
DEEP = "values are nested more than"
MAX_CONFIG_VALUES = 100_000
"""Values a configuration may hold (strings, numbers, keys), however it was built."""


class EnvResolver:
    """Replaces ``${VAR}`` / ``${VAR:-default}`` in every string and reports unset variables.

    Each container is resolved once (a subtree shared through YAML aliases, or by Python
    references, is not walked again); a cycle or nesting past ``MAX_NESTING`` is a problem.
    """

    def __init__(self, problems: list[ConfigProblem], env_values: set[str]) -> None:
        self.problems, self.env_values = problems, env_values
        self.done: dict[int, Any] = {}
        self.open: set[int] = set()
        self.count = 0

    def resolve(self, value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, str):
            return self._string(value, path)
        if not isinstance(value, (Mapping, list, tuple)):
            return value
        if id(value) in self.done:
            return self.done[id(value)]
        if id(value) in self.open:
            self.problems.append(ConfigProblem(format_path(path), f"{CYCLE} (a value contains itself)"))
            return None
        if len(path) > MAX_NESTING:
            if not any(p.message.startswith(DEEP) for p in self.problems):
                self.problems.append(ConfigProblem("", f"{DEEP} {MAX_NESTING} deep"))
            return None
        self.count += len(value)
        if self.count > MAX_CONFIG_VALUES:
            if not any(p.message.startswith(DEEP) for p in self.problems):
                self.problems.append(ConfigProblem("", f"{DEEP} {MAX_NESTING} deep or hold more than "
                                                       f"{MAX_CONFIG_VALUES:,} values"))
            return None
        self.open.add(id(value))
        try:
            if isinstance(value, Mapping):
                out: Any = {k: self.resolve(v, (*path, k)) for k, v in value.items()}
            else:
                out = [self.resolve(v, (*path, i)) for i, v in enumerate(value)]
        finally:
            self.open.discard(id(value))
        self.done[id(value)] = out
        return out

    def _string(self, value: str, path: tuple[Any, ...]) -> str:
        if "${" not in value:
            return value
        missing: list[str] = []
        used = False
        override = ENVIRONMENT.get()
        environ = os.environ if override is None else override.environ

        def sub(match: re.Match[str]) -> str:
            nonlocal used
            name, default = match.group(1), match.group(2)
            resolved = environ.get(name)
            if resolved is None:
                if default is not None:
                    return default
                if override is not None and override.placeholders:
                    override.unset.append(ConfigProblem(
                        format_path(path), f"environment variable {name} is not set (checked with a placeholder)"))
                    return match.group(0)
                missing.append(name)
                return ""
            used = True
            return resolved

        result = ENV_REF.sub(sub, value)
        for name in missing:
            self.problems.append(ConfigProblem(format_path(path), f"environment variable {name} is not set"))
        if used:
            self.env_values.add(result)
        return EnvStr(result)


def format_path(loc: tuple[Any, ...]) -> str:
    """A configuration path (``tiers.fast.models[0]``), keys that do not look like names hidden.

    Example:
        >>> format_path(("tiers", "sk-live-7f3c9a1b2d4e6f80", "models", 0))
        'tiers.[a 24-character value].models[0]'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{config_key(part)}" if out else config_key(part)
    return out
