"""The one guarded parser of config text: files, ``--set`` overrides and text from another party.

``load_config(path, overrides)`` reads a YAML file, applies ``--set a.b=value`` overrides (values parsed as YAML) and
validates; ``config_from_text(text, source=...)`` validates text from anywhere else (the Flower server broadcasts the
resolved config to its clients). Both parse with ``_GuardedLoader``, which refuses, while composing and so before any
Python object exists, text over ``MAX_CONFIG_BYTES``, nesting deeper than ``MAX_DEPTH`` and more than ``MAX_NODES``
values once aliases are expanded (a billion-laughs file). Every problem is one ``ConfigError`` naming the file, the
key path and what is allowed, quoting at most ~80 characters of a bad value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import Node, ScalarNode

from fedsered.config.schema import (
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_CHARS,
    Config,
    clip_text,
    excerpt,
)
from fedsered.errors import ConfigError


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML over one of the parser's limits."""


class _GuardedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts nesting depth and values (an alias costs the size of what it names)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values in its expansion; absent while it is being composed

    def _refuse(self, problem: str) -> None:
        raise _Refused(None, None, problem, self.peek_event().start_mark)

    def _count(self, n: int) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            self._refuse(f"more than {MAX_NODES} values with aliases expanded")

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor or "")
            if target is not None:  # an undefined alias is the composer's own error
                if id(target) not in self._sizes:
                    self._refuse("recursive alias")
                self._count(self._sizes[id(target)])
            return super().compose_node(parent, index)
        if self._depth == MAX_DEPTH:
            self._refuse(f"nesting deeper than {MAX_DEPTH} levels")
        before = self._nodes
        self._count(1)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # e.g. a date the resolver accepts and datetime refuses
            problem = f"invalid value {excerpt(node.value)} ({exc})"
            raise ConstructorError(None, None, problem, node.start_mark) from None

    def construct_bounded_int(self, node: ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _Refused(None, None, f"a number of {len(node.value)} characters", node.start_mark)
        return self.construct_yaml_int(node)


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _GuardedLoader.construct_bounded_int)


def _parse_yaml(text: str, source: str) -> Any:
    """The Python value of one YAML document, under the limits above."""
    if len(text) > MAX_CONFIG_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return yaml.load(text, Loader=_GuardedLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.reader.ReaderError):
            what = f"invalid YAML at character {exc.position + 1}: unacceptable character {exc.character!r}"
        else:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = clip_text(getattr(exc, "problem", None) or "invalid YAML", 160)
            what = f"{'refused' if isinstance(exc, _Refused) else 'invalid YAML'}{where}: {problem}"
        raise ConfigError(f"{source}: {what}") from None


def _tree_of(text: str, source: str) -> dict[str, Any]:
    loaded = _parse_yaml(text, source)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(loaded).__name__}")
    return loaded


def _read_text(path: str | Path) -> str:
    """A config file's text: at most ``MAX_CONFIG_BYTES + 1`` bytes are read (``/dev/zero`` ends here too)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}") from None


# ---- error messages: the first problem, its key path, at most ~80 characters of the bad value


def _format_validation_error(err: ValidationError, source: str) -> str:
    errors = err.errors(include_url=False)
    first = errors[0]
    path = tuple(p for p in first["loc"] if not str(p).startswith("function-after"))
    loc = ".".join(clip_text(str(p), 40) for p in path)
    if first["type"] == "extra_forbidden":
        what = f"unknown key; allowed here: {', '.join(_allowed_keys(path[:-1]))}"
    else:
        what = clip_text(first["msg"].removeprefix("Value error, "), 300)
        if "input" in first and first["type"] != "missing" and not isinstance(first["input"], dict):
            what += f" (got {excerpt(first['input'])})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {loc + ': ' if loc else ''}{what}{more}"


def _allowed_keys(path: tuple[Any, ...]) -> list[str]:
    """The keys of the section at ``path``; the id under a ``dict[str, Section]`` (privacy.clients) is skipped."""
    model: type[BaseModel] = Config
    parts = iter(path)
    for part in parts:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if get_origin(ann) is dict:
            ann = get_args(ann)[1]
            next(parts, None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


# ---- public entry points


def apply_override(tree: dict[str, Any], assignment: str, *, source: str = "--set") -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (under the parser's limits)."""
    key, sep, raw = assignment.partition("=")
    where = f"{source} {excerpt(assignment)}"
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"{where}: expected KEY.PATH=VALUE")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(f"{where}: a key path of more than {MAX_DEPTH} parts")
    value = _parse_yaml(raw, where) if raw.strip() else None
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(tree: dict[str, Any], *, source: str = "<config>") -> Config:
    """Validate a plain dict as a ``Config``; errors name ``source`` and the key path."""
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def config_from_text(text: str, *, source: str) -> Config:
    """Parse and validate config YAML from another party (the server's broadcast), under the parser's limits.

    Args:
        text: one YAML document, a mapping of sections (empty text means the defaults).
        source: what the errors name, e.g. ``"server instruction"``.

    Raises:
        ConfigError: the text is too large, too deep, expands too far, is not YAML, or does not validate.
    """
    return config_from_dict(_tree_of(text, source), source=source)


def is_resolved_yaml(text: str) -> bool:
    """Whether ``text`` is exactly what ``Config.to_yaml`` writes: ``yaml.safe_dump`` of its own tree, keys in order.

    True for every ``config.yaml`` fedsered wrote, of any version (the test needs no schema); false for a file written
    by hand (comments, another layout or quoting) and for text that is not YAML or over the parser's limits.
    """
    try:
        tree = _parse_yaml(text, "<config.yaml>")
    except ConfigError:
        return False
    return isinstance(tree, dict) and yaml.safe_dump(tree, sort_keys=False) == text


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a config.

    Args:
        path: a YAML file, or ``None`` for the schema's defaults.
        overrides: ``a.b=value`` strings, applied in order.

    Returns:
        The validated ``Config``.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        tree = _tree_of(_read_text(path), source)
    for item in overrides:
        apply_override(tree, item)
    if overrides:
        source += " (with --set overrides)"
    return config_from_dict(tree, source=source)
