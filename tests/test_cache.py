"""The persistent catalogue cache: equal to a fresh load, invalidated by any change, robust.

Every test points ``LAYERCOST_CACHE_DIR`` at its own temporary directory, so none depends on
(or touches) the user's cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

import layercost_sym
from layercost_sym import cache as cache_module
from layercost_sym.cache import cache_dir, cache_key, cached_catalogue
from layercost_sym.catalogue import Catalogue, load_catalogue
from layercost_sym.errors import CatalogueError
from layercost_sym.glossary import formulas_dir
from layercost_sym.rule import Rule

PACKAGE = Path(layercost_sym.__file__).resolve().parent


@pytest.fixture
def cache_path(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("LAYERCOST_CACHE_DIR", str(path))
    return path


@pytest.fixture
def small_formulas(tmp_path):
    """A copy of two families of formulas/ (Linear: quick to load, and a Max in its variants)."""
    directory = tmp_path / "formulas"
    directory.mkdir()
    for name in ("symbols.toml", "linear.toml"):
        shutil.copy(formulas_dir() / name, directory / name)
    return directory


def no_fresh_load(monkeypatch):
    """Make a load that does not come from the cache fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the catalogue was loaded from formulas/, not from the cache")

    monkeypatch.setattr(cache_module, "load_catalogue", refuse)


def cache_files(path: Path) -> list[Path]:
    return sorted(path.glob("catalogue-*.json"))


# -- equal to a fresh load -----------------------------------------------------------------------


def assert_same_tree(a: sympy.Basic, b: sympy.Basic, where: str) -> None:
    """Structurally the same tree: ==, hash, and every node's class and argument set."""
    assert a == b and hash(a) == hash(b), where
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        assert type(x) is type(y) and len(x.args) == len(y.args), (where, x, y)
        assert getattr(x, "_argset", None) == getattr(y, "_argset", None), (where, x)
        stack.extend(zip(x.args, y.args, strict=True))


def assert_same_value(a, b, where: str) -> None:
    if isinstance(a, sympy.Basic):
        assert_same_tree(a, b, where)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_same_value(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same_value(a[key], b[key], f"{where}[{key}]")
    elif isinstance(a, tuple | list | frozenset):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(
            zip(
                sorted(a, key=str) if isinstance(a, frozenset) else a,
                sorted(b, key=str) if isinstance(b, frozenset) else b,
                strict=True,
            )
        ):
            assert_same_value(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def assert_same_rule(fresh: Rule, cached: Rule) -> None:
    where = fresh.name
    assert_same_value(fresh, cached, where)  # every field, variants included
    for f, c in zip((fresh, *fresh.variants), (cached, *cached.variants), strict=True):
        assert_same_value(f.expanded_defines, c.expanded_defines, f"{f.name} expanded")
        assert_same_value(f.params, c.params, f"{f.name}.params")
        assert_same_value(f.output_shape, c.output_shape, f"{f.name}.output_shape")
        assert_same_value(f.data_defaults(), c.data_defaults(), f"{f.name}.data_defaults")
        for quantity, convention, training in f.compact:
            assert_same_value(
                f.quantity(quantity, convention, training),
                c.quantity(quantity, convention, training),
                f"{f.name}.quantity({quantity}, {convention}, {training})",
            )


def test_every_rule_from_the_cache_equals_a_fresh_load(cache_path, monkeypatch):
    # the cache is written by another process, with another hash seed (set iteration order)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = (
        "from layercost_sym.cache import cached_catalogue; "
        "from layercost_sym.glossary import formulas_dir; cached_catalogue(formulas_dir())"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], env=env)
    fresh = load_catalogue(formulas_dir())  # meanwhile, in this process
    assert writer.wait() == 0 and len(cache_files(cache_path)) == 1
    no_fresh_load(monkeypatch)
    cached = cached_catalogue(formulas_dir())
    assert list(cached.rules) == list(fresh.rules)
    assert list(cached.by_module) == list(fresh.by_module)
    assert cached.files == fresh.files
    for module, rule in fresh.by_module.items():
        assert cached.by_module[module] is cached.rules[rule.name]
    for name, rule in fresh.rules.items():
        assert_same_rule(rule, cached.rules[name])
    assert cached.get("Conv2d.same") is cached.rules["Conv2d"].variant("same")


def test_the_cache_is_read_lazily_and_behaves_as_the_catalogue(cache_path, small_formulas):
    fresh = cached_catalogue(small_formulas)  # writes the cache
    cached = cached_catalogue(small_formulas)
    assert isinstance(cached, Catalogue) and not isinstance(cached.rules, dict)
    assert "Linear" in cached.rules and "Nope" not in cached.rules
    assert "Linear" in cached.by_module and cached.by_module.get("Nope") is None
    assert len(cached.rules) == len(fresh.rules) and sorted(cached.rules) == sorted(fresh.rules)
    assert cached.get("Linear") is cached.rules["Linear"] is cached.by_module["Linear"]
    with pytest.raises(KeyError):
        cached.rules["Nope"]


# -- invalidation --------------------------------------------------------------------------------


def test_a_changed_formula_file_is_validated_again(cache_path, small_formulas, monkeypatch):
    first = cached_catalogue(small_formulas)
    sizes = {"C_in": 3, "C_out": 4, "b": 1}
    # C_in*C_out weights and C_out biases (b = 1): 3*4 + 4
    assert layercost_sym.evaluate(first.get("Linear").params, sizes) == 16
    linear = small_formulas / "linear.toml"
    text = linear.read_text()
    assert 'params = "C_in*C_out + b*C_out"' in text
    linear.write_text(text.replace('params = "C_in*C_out + b*C_out"', 'params = "C_in*C_out"'))
    changed = cached_catalogue(small_formulas)
    assert layercost_sym.evaluate(changed.get("Linear").params, sizes) == 3 * 4
    assert len(cache_files(cache_path)) == 2  # one per version of the files
    # a broken file is reported at its line, cache or not
    broken = text.replace('params = "C_in*C_out + b*C_out"', 'params = "C_in*C_out + Q_x"')
    linear.write_text(broken)
    line = broken.splitlines().index('params = "C_in*C_out + Q_x"') + 1
    with pytest.raises(CatalogueError, match=rf"^formulas/linear.toml:{line}: rule Linear: "):
        cached_catalogue(small_formulas)
    # and back: the first version is read from its cache file again
    linear.write_text(text)
    no_fresh_load(monkeypatch)
    again = cached_catalogue(small_formulas)
    assert again.get("Linear").params == first.get("Linear").params


def test_the_key_covers_formulas_engine_and_versions(small_formulas, tmp_path, monkeypatch):
    key = cache_key(small_formulas)
    assert cache_key(small_formulas) == key
    renamed = small_formulas.rename(tmp_path / "catalogue")  # Rule.source names the folder
    assert cache_key(renamed) != key
    small_formulas = renamed.rename(small_formulas)
    (small_formulas / "README.md").write_text("any file under formulas/ counts\n")
    assert cache_key(small_formulas) != key
    key = cache_key(small_formulas)
    engine = tmp_path / "engine"
    engine.mkdir()
    for name in cache_module.ENGINE_MODULES:
        shutil.copy(PACKAGE / name, engine / name)
    monkeypatch.setattr(cache_module, "_PACKAGE", engine)
    assert cache_key(small_formulas) == key
    with (engine / "parsing.py").open("a") as f:
        f.write("# a change in the parser\n")
    assert cache_key(small_formulas) != key
    key = cache_key(small_formulas)
    monkeypatch.setattr(sympy, "__version__", "0.0.1")
    assert cache_key(small_formulas) != key
    key = cache_key(small_formulas)
    monkeypatch.setattr(cache_module, "__version__", "0.0.1")  # the version the key reads
    assert cache_key(small_formulas) != key


# -- damaged files, unusable directories ---------------------------------------------------------


def reseal(path: Path, body: bytes) -> None:
    """Write ``body`` under a header with a matching checksum (as a tamperer could)."""
    header = json.loads(path.read_bytes().partition(b"\n")[0])
    header["sha256"] = hashlib.sha256(body).hexdigest()
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_a_truncated_cache_file_is_ignored_and_rewritten(cache_path, small_formulas, monkeypatch):
    expected = cached_catalogue(small_formulas).get("Linear").params
    (path,) = cache_files(cache_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert cached_catalogue(small_formulas).get("Linear").params == expected
    assert path.read_bytes() == whole  # rewritten
    no_fresh_load(monkeypatch)
    assert cached_catalogue(small_formulas).get("Linear").params == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'["S","C_in"]', b'["S","__import__"]'),  # not a glossary symbol
        (b'["S","C_in"]', b'["eval","C_in"]'),  # not a node kind of the allow-list
        (b'"nodes":[', b'"nodes":[[],'),  # not a node
    ],
)
def test_an_altered_expression_pool_is_refused(cache_path, small_formulas, old, new):
    expected = cached_catalogue(small_formulas).get("Linear").params
    (path,) = cache_files(cache_path)
    body = path.read_bytes().partition(b"\n")[2]
    assert old in body
    reseal(path, body.replace(old, new, 1))
    assert cached_catalogue(small_formulas).get("Linear").params == expected
    assert old in path.read_bytes()  # rewritten from a fresh load


def test_an_altered_rule_line_falls_back_to_a_fresh_load(cache_path, small_formulas):
    expected = cached_catalogue(small_formulas).get("Linear")
    (path,) = cache_files(cache_path)
    index, *lines = path.read_bytes().partition(b"\n")[2].split(b"\n")
    names = [name for name, _ in json.loads(index)["rules"]]
    lines[names.index("Linear")] = b'{"rule":{"c":"Popen","v":{}},"defs":[]}'
    reseal(path, b"\n".join([index, *lines]))
    cached = cached_catalogue(small_formulas)
    assert not isinstance(cached.rules, dict)  # the index was fine: read lazily
    assert cached.get("Linear").params == expected.params  # the rule line was not
    assert b"Popen" not in path.read_bytes()


def test_an_unwritable_cache_dir_still_works(tmp_path, small_formulas, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LAYERCOST_CACHE_DIR", str(blocker / "cache"))
    for _ in range(2):
        rules = cached_catalogue(small_formulas).rules
        assert isinstance(rules, dict) and "Linear" in rules  # loaded, and no cache
    assert blocker.read_text() == "not a directory"


def test_the_cache_is_never_written_inside_the_package(tmp_path, small_formulas, monkeypatch):
    for inside in (PACKAGE, PACKAGE / "zoo", small_formulas):
        monkeypatch.setenv("LAYERCOST_CACHE_DIR", str(inside))
        before = sorted(PACKAGE.rglob("*")), sorted(small_formulas.rglob("*"))
        assert "Linear" in cached_catalogue(small_formulas).rules
        assert (sorted(PACKAGE.rglob("*")), sorted(small_formulas.rglob("*"))) == before


def test_where_the_cache_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYERCOST_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "layercost_sym"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "layercost_sym"
    monkeypatch.setenv("LAYERCOST_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_old_cache_files_are_pruned(cache_path, small_formulas):
    cache_path.mkdir()
    for i in range(cache_module.KEEP + 3):
        old = cache_path / f"catalogue-{i:040d}.json"
        old.write_text("{}")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    cached_catalogue(small_formulas)
    kept = cache_files(cache_path)
    assert len(kept) == cache_module.KEEP
    assert cache_path / f"catalogue-{cache_module.KEEP + 2:040d}.json" in kept  # the newest old
