"""The persistent cache of the validated catalogue, so that first use in a new process is fast.

Reading ``formulas/`` means parsing and validating every expression of every rule, seconds of
SymPy work (it simplifies ``Max``/``Min`` terms as they are built). What the loader built is
therefore stored once per version of the catalogue, as plain data (JSON through
:mod:`layercost_sym.plaindata`: no pickle, nothing is executed on reading), and a rule is
rebuilt from it only when it is first asked for.

* **Where:** ``$LAYERCOST_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/layercost_sym``, else
  ``~/.cache/layercost_sym``; never inside the installed package or ``formulas/`` (such a
  directory is not used). To clear the cache, delete that directory.
* **When it is used:** a cache file is named by a key, a hash of the contents of every file
  under ``formulas/`` (and of the glossary used), of the engine modules that decide what the
  loader builds (:data:`ENGINE_MODULES`), of the library's, SymPy's and Python's versions. Any
  change gives a new key: the files are read and validated again, and a broken file is
  reported at ``formulas/<file>:<line>`` as always.
* **Safety:** files are written whole under a temporary name and renamed (``os.replace``), so
  concurrent processes never see half a file; a damaged file (its checksum or its structure
  does not match) is ignored and rewritten; a directory that cannot be written means no cache,
  and nothing else changes. The newest :data:`KEEP` files are kept, older ones removed.

>>> import os
>>> from layercost_sym.cache import cache_dir, cache_key
>>> from layercost_sym.glossary import formulas_dir
>>> "LAYERCOST_CACHE_DIR" in os.environ or cache_dir().name == "layercost_sym"
True
>>> len(cache_key(formulas_dir()))  # sha256, hex
64
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import sympy

from ._version import __version__
from .catalogue import Catalogue, load_catalogue
from .errors import PlainDataError
from .glossary import Glossary, formulas_dir, glossary
from .plaindata import ExpressionReader, ExpressionWriter, from_plain, to_plain
from .rule import BindSpec, Constraint, InputPattern, Rule

__all__ = ["ENGINE_MODULES", "KEEP", "cache_dir", "cache_key", "cached_catalogue", "catalogue"]

FORMAT = "layercost_sym catalogue cache 1"
# the modules whose code may decide what the loader builds from formulas/: every module of the
# package's core (not its subpackages: torch tools, zoo, testing), so that no import the loader
# gains can leave the key behind
ENGINE_MODULES = tuple(
    sorted(p.name for p in Path(__file__).resolve().parent.glob("*.py") if p.name != "__main__.py")
)
KEEP = 8  # cache files kept (several checkouts or versions may be in use at once)
_RECORDS: dict[str, type] = {
    cls.__name__: cls for cls in (Rule, InputPattern, BindSpec, Constraint)
}
_PACKAGE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """The directory the catalogue cache lives in (see the module docstring)."""
    if os.environ.get("LAYERCOST_CACHE_DIR"):
        return Path(os.environ["LAYERCOST_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "layercost_sym"


def cache_key(directory: Path) -> str:
    """A hash of everything the loaded catalogue of ``directory`` depends on."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("format", FORMAT.encode())
    versions = (__version__, sympy.__version__, sys.version, sys.implementation.cache_tag)
    add("versions", repr(versions).encode())
    add("folder", directory.name.encode())  # error messages and Rule.source start with it
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        add(f"formulas/{path.relative_to(directory).as_posix()}", path.read_bytes())
    add("glossary", (formulas_dir() / "symbols.toml").read_bytes())
    add("quantities", (formulas_dir() / "quantities.toml").read_bytes())
    for name in ENGINE_MODULES:
        add(f"engine/{name}", (_PACKAGE / name).read_bytes())
    return digest.hexdigest()


def cached_catalogue(directory: Path) -> Catalogue:
    """The catalogue of ``directory`` (as :func:`~layercost_sym.catalogue.load_catalogue`
    loads it, with the installed glossary), from the cache when it holds this version of it.

    A missing or damaged cache file is (re)written after a fresh load; errors in the files are
    raised as by ``load_catalogue``.
    """
    gloss = glossary()
    try:
        key = cache_key(directory)
    except OSError:  # a file vanished while hashing, or an engine source is not shipped
        return load_catalogue(directory, gloss)
    folder = _usable_dir(directory)
    path = folder / f"catalogue-{key[:40]}.json" if folder is not None else None
    if path is not None and (stored := _read(path, key)) is not None:
        try:
            return _lazy_catalogue(*stored, directory, gloss, lambda: _fresh(directory, path))
        except (PlainDataError, TypeError, ValueError, KeyError):
            pass  # a file that only looked right: load afresh and replace it
    fresh = load_catalogue(directory, gloss)
    if path is not None:
        _write(path, key, fresh, gloss)
    return fresh


def _fresh(directory: Path, path: Path) -> Catalogue:
    """A fresh load, replacing a cache file that could not be rebuilt."""
    fresh = load_catalogue(directory, glossary())
    try:
        _write(path, cache_key(directory), fresh, glossary())
    except OSError:
        pass
    return fresh


def _usable_dir(directory: Path) -> Path | None:
    """The cache directory, or None where it would sit inside the package or the catalogue."""
    folder = cache_dir()
    try:
        resolved = folder.resolve()
    except OSError:
        return None
    for root in (_PACKAGE, directory.resolve()):
        if resolved == root or root in resolved.parents:
            return None
    return folder


# -- reading -------------------------------------------------------------------------------------


def _read(path: Path, key: str) -> tuple[dict[str, Any], list[bytes]] | None:
    """The index and the rule lines of a cache file, or None if it is missing, foreign or
    damaged. A file is a header line (format, key, checksum of the rest), an index line (files,
    rule names and modules, the expression pool) and one line per rule, parsed when used."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head, newline, body = raw.partition(b"\n")
    try:
        header = json.loads(head)
        if not newline or not isinstance(header, dict):
            return None
        if header.get("format") != FORMAT or header.get("key") != key:
            return None
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            return None  # truncated or altered
        index, *lines = body.split(b"\n")
        payload = json.loads(index)
    except (ValueError, RecursionError):  # JSON errors are ValueErrors
        return None
    return (payload, lines) if isinstance(payload, dict) else None


class _CachedRules:
    """The rules of a cache file, each rebuilt on first use (``fresh`` if one cannot be)."""

    def __init__(
        self, payload: dict[str, Any], lines: list[bytes], gloss: Glossary, fresh: Any
    ) -> None:
        self.reader = ExpressionReader(payload["nodes"], gloss.symbols)
        entries = payload["rules"]
        if (
            not isinstance(entries, list)
            or len(entries) != len(lines)
            or not all(
                isinstance(e, list) and len(e) == 2 and all(isinstance(n, str) for n in e)
                for e in entries
            )
        ):
            raise PlainDataError("rules must be [name, module] entries, one per rule line")
        records = zip(entries, lines, strict=True)
        self.records: dict[str, bytes] = {name: line for (name, _), line in records}
        self.module_rule: dict[str, str] = {module: name for name, module in entries}
        self.built: dict[str, Rule] = {}
        self.load_fresh = fresh
        self.fresh: Catalogue | None = None
        self.lock = threading.RLock()  # one Rule object per name, whichever thread asks first

    def get(self, name: str) -> Rule:
        rule = self.built.get(name)
        if rule is not None:
            return rule
        with self.lock:
            if name in self.built:
                return self.built[name]
            if self.fresh is None:
                try:
                    rule = self.built[name] = self._rebuild(self.records[name])
                    return rule
                except (PlainDataError, TypeError, ValueError, AttributeError, RecursionError):
                    self.fresh = self.load_fresh()
            return self.fresh.rules[name]

    def _rebuild(self, line: bytes) -> Rule:
        record = json.loads(line)
        if not isinstance(record, dict) or set(record) != {"rule", "defs"}:
            raise PlainDataError("a rule record holds 'rule' and 'defs'")
        rule = from_plain(record["rule"], self.reader, _RECORDS)
        family = (rule, *rule.variants) if isinstance(rule, Rule) else ()
        if not family or len(record["defs"]) != len(family):
            raise PlainDataError("a rule record's definitions do not match its variants")
        for member, pairs in zip(family, record["defs"], strict=True):
            defs = {self.reader.get(s): self.reader.get(e) for s, e in pairs}
            if defs.keys() != member.defines.keys():
                raise PlainDataError(f"definitions of {member.name} do not match")
            member.__dict__["expanded_defines"] = defs  # Rule's cached expanded definitions
        return rule


class _RuleView(Mapping[str, Rule]):
    """Rules by name (or by module), rebuilt from the cache only when looked up."""

    def __init__(self, names: Mapping[str, str], rules: _CachedRules) -> None:
        self._names = names  # key -> rule name
        self._rules = rules

    def __getitem__(self, key: str) -> Rule:
        return self._rules.get(self._names[key])

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<rules {', '.join(self._names)}>"


def _lazy_catalogue(
    payload: dict[str, Any], lines: list[bytes], directory: Path, gloss: Glossary, fresh: Any
) -> Catalogue:
    files = payload["files"]
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise PlainDataError("files must be a list of names")
    rules = _CachedRules(payload, lines, gloss, fresh)
    return Catalogue(
        rules=_RuleView({name: name for name in rules.records}, rules),
        by_module=_RuleView(rules.module_rule, rules),
        files=tuple(directory / f for f in files),
    )


# -- writing -------------------------------------------------------------------------------------


def _write(path: Path, key: str, catalogue: Catalogue, gloss: Glossary) -> None:
    """Store ``catalogue`` at ``path`` atomically; silently nothing where that is impossible."""
    try:
        index, records = _payload(catalogue, gloss)
    except PlainDataError:
        return  # a value with no plain form: no cache, the fresh load stands
    body = b"\n".join(json.dumps(x, separators=(",", ":")).encode() for x in (index, *records))
    header = {"format": FORMAT, "key": key, "sha256": hashlib.sha256(body).hexdigest()}
    data = json.dumps(header).encode() + b"\n" + body
    import tempfile  # only when writing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".catalogue-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return
    _prune(path.parent)


def _payload(catalogue: Catalogue, gloss: Glossary) -> tuple[dict[str, Any], list[Any]]:
    writer = ExpressionWriter(gloss.symbols)
    entries, records = [], []
    for name, rule in catalogue.rules.items():
        family = (rule, *rule.variants)
        # the expanded definitions are stored too: computing them is the slow part of .flops
        defs = [
            [[writer.add(s), writer.add(e)] for s, e in member.expanded_defines.items()]
            for member in family
        ]
        records.append({"rule": to_plain(rule, writer, _RECORDS), "defs": defs})
        entries.append([name, rule.module])
    files = [p.name for p in catalogue.files]
    return {"files": files, "rules": entries, "nodes": writer.nodes}, records


def _prune(folder: Path) -> None:
    """Keep the newest :data:`KEEP` cache files; drop temporary files left by a crash."""
    try:
        files = sorted(folder.glob("catalogue-*.json"), key=lambda p: p.stat().st_mtime)
        stale = [
            p for p in folder.glob(".catalogue-*.tmp") if p.stat().st_mtime < time.time() - 3600
        ]
    except OSError:
        return
    for old in files[:-KEEP] + stale:
        try:
            old.unlink()
        except OSError:
            pass


@cache
def catalogue() -> Catalogue:
    """The installed catalogue, loaded and validated once per process, on first use.

    What the loader builds is kept in a user cache directory between processes, keyed by the
    contents of ``formulas/`` and of the engine (see the module docstring); its rules are
    rebuilt from there one at a time, when first looked up.

    >>> "Conv2d" in catalogue().rules
    True
    """
    return cached_catalogue(formulas_dir())
