"""Reading the catalogue's TOML files with line numbers for error messages.

:mod:`tomllib` returns plain dicts without positions, so a light scan of the text maps each
table header and each ``key =`` line to its line number.  The scan only has to be as good as the
catalogue grammar (``formulas/README.md``): table headers, dotted headers and one key per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import CatalogueError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


@dataclass(frozen=True)
class SourceFile:
    """One parsed TOML file of the catalogue, able to say where a table or key stands."""

    path: Path

    @cached_property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def data(self) -> dict:
        import tomllib  # not needed until a file is read

        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message ends with "(at line L, column C)"
            raise CatalogueError(f"{self.path}: invalid TOML: {exc}") from None

    @cached_property
    def _lines(self) -> dict[tuple[str, ...], int]:
        lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(self.text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                table = _split_key(header.group(1))
                lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                lines.setdefault(table + _split_key(key.group(1)), number)
        return lines

    def line(self, *path: str) -> int:
        """The line where ``path`` (table names then key) is written; falls back to its parents."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 1

    @cached_property
    def display(self) -> str:
        """The path from the catalogue folder's name on: ``formulas/conventions/thop.toml``."""
        root = self.path.parent
        if not (root / "symbols.toml").exists() and (root.parent / "symbols.toml").exists():
            root = root.parent
        return f"{root.name}/{self.path.relative_to(root).as_posix()}"

    def where(self, *path: str) -> str:
        """``file:line`` of ``path``, for error messages."""
        return f"{self.display}:{self.line(*path)}"

    def error(self, path: tuple[str, ...], message: str) -> CatalogueError:
        return CatalogueError(f"{self.where(*path)}: {message}")
