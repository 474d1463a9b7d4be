"""Load YAML safely while keeping the source position of every node.

PyYAML's composer gives nodes with marks; we turn them into plain ``dict``/``list`` subclasses that
remember where each key and item came from, so every later diagnostic can say ``file:line:col``.

Hostile input never reaches a traceback: duplicate keys, non-standard tags (``!!python/...`` is
rejected, never constructed), alias bombs, pathological nesting, tabs, binary and non-UTF-8 bytes all
become diagnostics. Scalars resolve by YAML 1.2's core rules (only ``true``/``false`` are booleans),
so the policy key ``on:`` stays the string ``"on"`` instead of YAML 1.1's ``True``.
"""

from __future__ import annotations

from loopspec.language.errors import DiagnosticError

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

import loopspec.language.codes as codes
from .diagnostics import Diagnostic, Position

MAX_DEPTH = 64
MAX_NODES = 50_000
MAX_BYTES = 4 * 1024 * 1024

_STR = "tag:yaml.org,2002:str"
_STD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class _Marks(dict):  # type: ignore[type-arg]
    """key -> the parser's mark, made a :class:`Position` only when asked for: a valid document
    never asks, and building a position for every node was a sixth of reading a cassette."""

    def __getitem__(self, key: Any) -> Position:
        return _pos(dict.__getitem__(self, key))

    def get(self, key: Any, default: Any = None) -> Any:
        mark = dict.get(self, key, _ABSENT)
        return default if mark is _ABSENT else _pos(mark)


class _MarkList(list):  # type: ignore[type-arg]
    """index -> the parser's mark, made a :class:`Position` when asked for (see :class:`_Marks`)."""

    def __getitem__(self, index: Any) -> Any:
        got = list.__getitem__(self, index)
        return [_pos(m) for m in got] if isinstance(index, slice) else _pos(got)

    def __iter__(self) -> Any:
        return (_pos(m) for m in list.__iter__(self))


_ABSENT = object()


class YMap(dict):  # type: ignore[type-arg]
    """A mapping that knows where it and each of its keys and values stand in the source."""

    _mark: Any
    key_pos: dict[Any, Position]
    value_pos: dict[Any, Position]

    @property
    def pos(self) -> Position:
        return _pos(self._mark)

    def pos_of(self, key: Any) -> Position:
        return self.value_pos.get(key, self.pos)


class YList(list):  # type: ignore[type-arg]
    """A sequence that knows where it and each of its items stand in the source."""

    _mark: Any
    item_pos: list[Position]

    @property
    def pos(self) -> Position:
        return _pos(self._mark)

    def pos_of(self, index: int) -> Position:
        if 0 <= index < len(self.item_pos):
            return self.item_pos[index]
        return self.pos


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core-schema tags (registered below), resolved on the short path.

    libyaml's parser asks the (Python) resolver about every node it composes; PyYAML's general
    ``resolve`` also walks path resolvers and wildcard lists, which this resolver never has, and
    that walk was a quarter of reading a cassette."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path resolvers

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:  # plain: the resolvers listed under its first character ("" for empty)
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return self.DEFAULT_SCALAR_TAG
        return self.DEFAULT_SEQUENCE_TAG if kind is SequenceNode else self.DEFAULT_MAPPING_TAG


# YAML 1.2 core schema resolution: no yes/no/on/off booleans, no sexagesimal numbers.
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)

assert None not in _Resolver.yaml_implicit_resolvers  # resolve() above has no wildcard list to walk


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(yaml.cyaml.CParser, yaml.constructor.SafeConstructor, _Resolver):  # type: ignore[misc]
        """The same loader on libyaml's parser: about ten times faster on large cassettes."""

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)

    _FastLoader: Any = _CLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _FastLoader = _Loader


_DEEP_HINT = "a policy is a few levels deep; this input is not a policy"


def _pos(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class LoadError(DiagnosticError):
    """A file that cannot be read as YAML at all (missing, binary, syntax); one diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__((diagnostic,))


class _Converter:
    def __init__(self, file: str, loader: _Loader):
        self.file = file
        self.loader = loader
        self.count = 0

    def fail(self, code: str, message: str, node: Node, hint: str = "") -> LoadError:
        return LoadError(Diagnostic(code, message, self.file, pos=_pos(node.start_mark), hint=hint))

    def convert(self, node: Node, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._too_many(node)
        if depth > MAX_DEPTH:
            raise self.fail(codes.TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels", node, _DEEP_HINT)
        if node.tag not in _STD_TAGS:
            raise self.fail(
                codes.YAML_TAG,
                f"tag '{node.tag}' is not allowed",
                node,
                "policies are plain YAML: remove the tag (python/object tags are never constructed)",
            )
        if isinstance(node, ScalarNode):
            if node.tag == _STR:  # most scalars: the text is the value, no constructor needed
                return node.value
            try:
                return self.loader.construct_object(node, deep=False)
            except yaml.YAMLError as exc:
                raise self.fail(codes.BAD_SCALAR, f"bad scalar: {exc}", node) from None
        # A plain string child is taken in place, without a call: the same count, depth and tag
        # checks as convert() in fewer steps (most of a cassette is string keys and values).
        inline = depth < MAX_DEPTH
        if isinstance(node, SequenceNode):
            out = YList()
            out._mark = node.start_mark
            marks = _MarkList()
            for item in node.value:
                if inline and item.tag == _STR and type(item) is ScalarNode:
                    self.count += 1
                    if self.count > MAX_NODES:
                        raise self._too_many(item)
                    out.append(item.value)
                else:
                    out.append(self.convert(item, depth + 1))
                list.append(marks, item.start_mark)
            out.item_pos = marks
            return out
        if isinstance(node, MappingNode):
            m = YMap()
            m._mark = node.start_mark
            key_marks, value_marks = _Marks(), _Marks()
            m.key_pos = key_marks
            m.value_pos = value_marks
            for key_node, value_node in node.value:
                if inline and key_node.tag == _STR and type(key_node) is ScalarNode:
                    self.count += 1
                    if self.count > MAX_NODES:
                        raise self._too_many(key_node)
                    key = key_node.value
                else:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        raise self.fail(codes.YAML_TAG, "merge keys (<<) are not supported", key_node)
                    key = self.convert(key_node, depth + 1)
                    if isinstance(key, (dict, list)):
                        raise self.fail(codes.BAD_SCALAR, "a mapping key must be a plain scalar", key_node)
                if key in m:
                    first = m.key_pos[key]
                    raise self.fail(
                        codes.DUPLICATE_KEY,
                        f"duplicate key '{key}' (first defined at line {first.line}, col {first.col})",
                        key_node,
                        "YAML keeps only the last one silently; merge the two entries",
                    )
                if inline and value_node.tag == _STR and type(value_node) is ScalarNode:
                    self.count += 1
                    if self.count > MAX_NODES:
                        raise self._too_many(value_node)
                    m[key] = value_node.value
                else:
                    m[key] = self.convert(value_node, depth + 1)
                dict.__setitem__(key_marks, key, key_node.start_mark)
                dict.__setitem__(value_marks, key, value_node.start_mark)
            return m
        raise self.fail(codes.BAD_SCALAR, "unsupported YAML node", node)  # pragma: no cover

    def _too_many(self, node: Node) -> LoadError:
        return self.fail(
            codes.TOO_MANY_NODES,
            f"document expands to more than {MAX_NODES} nodes",
            node,
            "anchors and aliases multiply; a policy never needs this many (alias bomb?)",
        )


def _depth_guard(text: str, file: str, loader_class: Any) -> None:
    """Refuse pathological nesting before the (recursive) composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=loader_class):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise LoadError(
                    Diagnostic(
                        codes.TOO_DEEP,
                        f"nesting deeper than {MAX_DEPTH} levels",
                        file,
                        pos=_pos(event.start_mark),
                        hint=_DEEP_HINT,
                    )
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _depth_guard_quietly(text: str, file: str) -> None:
    """Run the depth guard with the pure-Python parser; only an LS104 escapes, syntax errors don't."""
    try:
        _depth_guard(text, file, _Loader)
    except yaml.YAMLError:
        pass


_LIBYAML_NEST_LIMIT: bool | None = None


def _libyaml_limits_nesting() -> bool:
    """libyaml 0.2.5+ refuses nesting past 1000 levels while it scans, so its (recursive, C)
    composer never sees deeper input and the separate depth-guard pass can be skipped; asked once,
    since an older libyaml without the limit would let a few MiB of ``[`` overflow the C stack."""
    global _LIBYAML_NEST_LIMIT
    if _LIBYAML_NEST_LIMIT is None:
        try:
            _FastLoader("[" * 1100 + "]" * 1100).get_single_node()
            _LIBYAML_NEST_LIMIT = False
        except yaml.YAMLError as exc:
            _LIBYAML_NEST_LIMIT = "nesting" in str(exc)
    return _LIBYAML_NEST_LIMIT


def load_yaml_text(text: str, file: str) -> Any:
    """Parse one YAML document into YMap/YList/scalars. Raises :class:`LoadError` with a diagnostic."""
    if "\t" in text:  # libyaml's tab errors are vaguer than the pure-Python scanner's
        return _load(text, file, _Loader)
    return _load(text, file, _FastLoader)


def _load(text: str, file: str, loader_class: Any) -> Any:
    try:
        if loader_class is _Loader or not _libyaml_limits_nesting():  # else convert() reports LS104
            _depth_guard(text, file, loader_class)
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except LoadError:
        raise
    except yaml.MarkedYAMLError as exc:
        if loader_class is not _Loader:
            # libyaml scans flow collections ahead and may fail on its own nesting limit before
            # the depth guard sees an event; the pure-Python parser yields lazily, so asking it
            # reports deep input as LS104 whatever wording the installed libyaml uses.
            _depth_guard_quietly(text, file)
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}; {problem}"
        hint = ""
        if "\t" in problem or "'\\t'" in problem:
            hint = "YAML forbids tabs for indentation; indent with spaces"
        raise LoadError(
            Diagnostic(
                codes.YAML_SYNTAX,
                f"YAML syntax error: {problem}",
                file,
                pos=_pos(mark) if mark else None,
                hint=hint,
            )
        ) from None
    except yaml.YAMLError as exc:
        raise LoadError(Diagnostic(codes.YAML_SYNTAX, f"YAML error: {exc}", file)) from None
    except RecursionError:
        raise LoadError(Diagnostic(codes.TOO_DEEP, "nesting too deep to read", file)) from None
    if node is None:
        raise LoadError(
            Diagnostic(codes.EMPTY_FILE, "the file is empty", file, pos=Position(1, 1), hint="start from machines/default.yaml")
        )
    return _Converter(file, loader).convert(node, 0)


def read_yaml_bytes(path: str) -> bytes:
    """The file's bytes (one more than :data:`MAX_BYTES` at most); a LoadError if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LoadError(Diagnostic(codes.UNREADABLE_FILE, f"cannot read file: {exc.strerror or exc}", path)) from None


def load_yaml_file(path: str) -> Any:
    """Read and parse a file; every failure (missing, binary, not UTF-8, too large) is a LoadError."""
    return load_yaml_bytes(read_yaml_bytes(path), path)


def load_yaml_bytes(raw: bytes, path: str) -> Any:
    """Parse the bytes of the file ``path`` (binary, not UTF-8 or too large is a LoadError)."""
    if len(raw) > MAX_BYTES:
        raise LoadError(Diagnostic(codes.UNREADABLE_FILE, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB", path))
    if b"\x00" in raw:
        raise LoadError(
            Diagnostic(codes.UNREADABLE_FILE, "file is binary (contains NUL bytes), not YAML", path, hint="pass a .yaml policy file")
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LoadError(
            Diagnostic(codes.UNREADABLE_FILE, "file is not valid UTF-8", path, pos=Position(line, col), hint="save it as UTF-8")
        ) from None
    return load_yaml_text(text, path)
