"""``python -m layercost_sym`` is the ``layercost`` command."""

from .cli import main

raise SystemExit(main())
