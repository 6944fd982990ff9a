"""A migrated, empty database for the local Prefect API, kept once per Prefect version.

Prefect migrates a new database on its server's first start: about 15 s of CPU on two cores,
more than the rest of a small lifecycle, paid by every new `PREFECT_HOME` (each new project,
each test). The first local API that migrates one leaves a copy under the user's cache (taken
once it answers, before any flow writes to it: block types and schemas, no run); a new
`PREFECT_HOME` starts from that copy, which Prefect's start-up check finds at its head revision.
Only Prefect's default database (`prefect.db` in `PREFECT_HOME`) is seeded so; a configured
database URL is left to Prefect.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from taxifare_flow import migrated_copies

log = logging.getLogger(__name__)

_DB = "prefect.db"
#: Prefect's settings naming its database; either set means not the default file.
_URL_VARS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def _template() -> Path | None:
    """The template's path for the installed Prefect (`None`: no default database, or Prefect
    not installed)."""
    if any(os.environ.get(name) for name in _URL_VARS):
        return None
    return migrated_copies.copy_path("prefect-db", "prefect", _DB)


def seed(prefect_home: Path) -> bool:
    """Copies the template into a `PREFECT_HOME` that has no database yet; True if it did."""
    template = _template()
    target = prefect_home / _DB
    if template is None or not template.is_file() or target.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=prefect_home, prefix=".prefect.db.")
    try:
        with os.fdopen(fd, "wb") as out, template.open("rb") as src:
            shutil.copyfileobj(src, out)
        # A database another process created meanwhile wins: link, never replace.
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError as e:  # a cache that cannot be read: Prefect migrates, as without one
        log.debug("Prefect database template not used: %s", e)
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def keep(prefect_home: Path) -> None:
    """After a local API migrated a new database and answers: keeps a copy as the template
    (a no-op when one exists)."""
    template = _template()
    if template is not None:
        migrated_copies.keep(prefect_home / _DB, template)
