"""``python -m cypoe …`` runs the ``cypoe`` command."""
import sys

from cypoe.cli import main

if __name__ == "__main__":
    sys.exit(main())
