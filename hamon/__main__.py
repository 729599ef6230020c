"""``python3 -m hamon`` runs the administrator's command from a checkout."""
from hamon.cli import main

raise SystemExit(main())
