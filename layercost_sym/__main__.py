"""``python -m layercost_sym`` is the ``layercost`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
