"""Bounded reading of user files: paths, sizes, YAML and JSON (the door every input passes).

Users feed roofplan files from many hands (HF configs, vendor catalogs, teammates' CSVs), so the
work a file can cause is bounded before it is parsed, and every failure is an
:class:`~roofplan.errors.InputError` (exit 2) naming the file:

* :func:`user_path`: ``~`` expansion without ``RuntimeError`` for an unknown user, and names no
  file system accepts (a component over 255 bytes, a path over 4,096: Linux ``NAME_MAX`` /
  ``PATH_MAX``) refused before any ``stat`` raises ``OSError`` "File name too long";
* :func:`read_text`: a size limit per kind of file (:data:`SIZE_LIMITS`), checked on the open
  file, and UTF-8 decoding;
* :func:`load_yaml`: PyYAML's safe loader with nesting limited to :data:`MAX_DEPTH` and aliases
  limited to :data:`MAX_ALIASES` uses and :data:`MAX_NODES` nodes after expansion ("billion
  laughs": 389 bytes of nested aliases expand to 10^9 nodes) and a key given twice in one mapping
  is an error (PyYAML keeps the last silently); integers of more than
  :data:`MAX_DIGITS` digits become :class:`HugeInt` (no ``ValueError`` from Python's 4,300-digit
  limit), and the bounds of each field then reject them with its name;
* :func:`load_json`: duplicate keys are errors, ``NaN``/``Infinity`` are refused, same depth and
  digit limits.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import yaml

from roofplan.errors import InputError

#: Largest file of each kind roofplan reads, in bytes. Real inputs are far smaller: a catalog or
#: model YAML is a few KiB, a config.json of the largest HF models ~10 KiB, an overlay < 1 KiB; a
#: measurement file of 10^6 rows is ~100 MB.
SIZE_LIMITS = {"yaml": 4 * 2**20, "json": 4 * 2**20, "measurements": 256 * 2**20}
#: Deepest nesting of YAML/JSON collections (catalogs nest 4 levels, HF configs 3).
MAX_DEPTH = 32
#: Alias uses and nodes (after expanding aliases) in one YAML document.
MAX_ALIASES = 1000
MAX_NODES = 100_000
#: Digits of the largest integer literal kept as is (2^64 has 20).
MAX_DIGITS = 24
#: Most measurement rows one run reads (``calibrate``, ``validate --measurements`` and suite CSVs):
#: a least-squares fit needs tens to thousands (an nccl-tests sweep is ~30 rows, a GEMM sweep a few
#: thousand); the cap bounds the fit's time and memory.
MAX_ROWS = 50_000
#: Linux NAME_MAX and PATH_MAX.
NAME_MAX = 255
PATH_MAX = 4096


class HugeInt(int):
    """An integer literal with more than :data:`MAX_DIGITS` digits: kept as ``±10**MAX_DIGITS`` so
    that range checks reject it, printed as its first digits and its length."""

    text: str

    def __new__(cls, text: str) -> HugeInt:
        sign = -1 if text.lstrip().startswith("-") else 1
        obj = super().__new__(cls, sign * 10**MAX_DIGITS)
        obj.text = text.strip()
        return obj

    def __repr__(self) -> str:
        digits = len(self.text.lstrip("+-"))
        return f"{self.text[:12]}... ({digits} digits)"

    __str__ = __repr__


def _int(text: str) -> int:
    return HugeInt(text) if len(text.lstrip("+-").replace("_", "")) > MAX_DIGITS else int(text)


def user_path(text: str | os.PathLike, field: str) -> Path:
    """``text`` as a Path with ``~`` expanded; InputError for names no file system accepts."""
    s = os.fspath(text)
    if "\x00" in s:
        raise InputError(field, s, "a path without NUL characters")
    if s.startswith("~"):
        try:
            s = os.path.expanduser(s)
        except RuntimeError:  # no home directory
            raise InputError(field, s, "a path whose ~ names a known user's home") from None
        if s.startswith("~"):
            raise InputError(field, s, "a path whose ~ names a known user's home (no such user)")
    if len(os.fsencode(s)) > PATH_MAX or any(len(os.fsencode(part)) > NAME_MAX for part in s.split(os.sep)):
        raise InputError(
            field, s, f"a path of at most {PATH_MAX} bytes with names of at most {NAME_MAX} bytes"
        )
    return Path(s)


def is_file(path: Path) -> bool:
    """``path.is_file()`` that is False (not OSError) for names the system refuses."""
    try:
        return path.is_file()
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()`` that is False (not OSError) for names the system refuses."""
    try:
        return path.is_dir()
    except OSError:
        return False


def open_limited(path: Path, field: str, kind: str):
    """The file opened as UTF-8 text after checking its size against ``SIZE_LIMITS[kind]``."""
    limit = SIZE_LIMITS[kind]
    try:
        f = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise InputError(field, str(path), f"a readable file ({exc.strerror or exc})") from None
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        f.close()
        raise InputError(field, str(path), f"a readable file ({exc.strerror or exc})") from None
    if size > limit:
        f.close()
        raise InputError(
            field, str(path), f"a file of at most {limit // 2**20} MiB (this one is {size / 2**20:.1f} MiB)"
        )
    return f


def read_text(path: Path, field: str, kind: str) -> str:
    """The whole file as text, at most ``SIZE_LIMITS[kind]`` bytes, UTF-8."""
    with open_limited(path, field, kind) as f:
        try:
            return f.read(SIZE_LIMITS[kind] + 1)  # a file growing while read is cut at the limit
        except UnicodeDecodeError:
            raise InputError(field, str(path), "a UTF-8 text file (this one is binary)") from None
        except OSError as exc:
            raise InputError(field, str(path), f"a readable file ({exc.strerror or exc})") from None


# -- YAML --------------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with limits on nesting and on alias expansion."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(f"more than {MAX_ALIASES} alias uses (*name)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys are each given once (PyYAML keeps the last silently)."""
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if key in seen:
                        raise _Limit(
                            f"the key {key[:60]!r} twice in one mapping",
                            key_node.start_mark,
                            "with each key once",
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader, node):
    text = str(node.value).replace("_", "")
    if len(text.lstrip("+-")) > MAX_DIGITS and text.lstrip("+-").isdigit():
        return HugeInt(text)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class _Limit(Exception):
    def __init__(self, what: str, mark=None, allowed: str = ""):
        super().__init__(what)
        self.what = what
        self.mark = mark
        self.allowed = allowed or (
            f"within roofplan's input limits (nesting {MAX_DEPTH}, aliases {MAX_ALIASES}, "
            f"values {MAX_NODES:,})"
        )


def _check_expansion(root) -> None:
    """Count the nodes of the document with aliases expanded (memoised per node, so the count
    itself stays cheap); refuse cycles and more than :data:`MAX_NODES`."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not done:
            if key in busy:
                raise _Limit("a recursive alias (an anchor used inside itself)", node.start_mark)
            busy.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        busy.discard(key)
        total = 1 + sum(sizes.get(id(c), 0) for c in children)
        if total > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES:,} values once aliases are expanded", node.start_mark)
        sizes[key] = total


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, where: str, expected: str = "valid YAML"):
    """Parse one YAML document under the limits above; InputError naming ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _Limit as exc:
        at = f" line {exc.mark.line + 1}" if exc.mark is not None else ""
        raise InputError(f"{where}{at}", "YAML with " + exc.what, f"{expected} {exc.allowed}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(f"{where}{at}", "malformed YAML", f"{expected} ({problem})") from None
    except (RecursionError, ValueError) as exc:  # defence in depth: limits above come first
        raise InputError(
            where, "YAML beyond roofplan's input limits", f"{expected} ({type(exc).__name__})"
        ) from None


# -- JSON --------------------------------------------------------------------------------------------


class _Duplicate(Exception):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(doc) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def load_json(text: str, where: str, expected: str = "valid JSON"):
    """Parse JSON strictly: duplicate keys, NaN/Infinity and nesting beyond :data:`MAX_DEPTH` are
    InputErrors naming ``where``."""
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise InputError(f"{where}: {exc}", "duplicate key", f"{expected} with each key once") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            where, f"malformed JSON at line {exc.lineno} column {exc.colno}", f"{expected} ({exc.msg})"
        ) from None
    except RecursionError:  # CPython's decoder recurses once per level
        raise InputError(where, f"JSON nesting deeper than {MAX_DEPTH} levels", expected) from None
    except ValueError as exc:
        raise InputError(where, str(exc)[:80], expected) from None
    if _depth(doc) > MAX_DEPTH:
        raise InputError(where, f"JSON nesting deeper than {MAX_DEPTH} levels", expected)
    return doc


#: Suffixes of a token count: kilo ... peta (``g`` for giga, as some recipes write it).
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_tokens(text: str | None) -> float | None:
    """``15T``, ``2.5e12``, ``300B`` -> a number of tokens."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtTpP]?)\s*", text)
    if not m:
        raise InputError("tokens", text, "a token count such as 2e12, 300B or 15T")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1.0)
    if not math.isfinite(value):  # 1e400 parses as inf: no run trains on infinitely many tokens
        raise InputError("tokens", text, "a finite token count such as 2e12, 300B or 15T")
    return value
