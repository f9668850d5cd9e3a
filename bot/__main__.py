"""`python -m bot ...`: the command line."""

from .cli import main

raise SystemExit(main())
