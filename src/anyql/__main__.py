"""``python -m anyql``: the same as the ``anyql`` command (see ``anyql.cli``)."""

from __future__ import annotations

from anyql.cli import main_entry

if __name__ == "__main__":
    main_entry()
