"""The dashboard's static files (app scripts, styles, vendored htmx and uPlot), from the package.

They are not PHI: browsers may keep them, but revalidate each use (``no-cache`` with the ETag and
Last-Modified that Starlette sends), so an upgrade is seen at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC", "Assets"]

STATIC: Final = Path(__file__).resolve().parent.parent / "static"


class Assets(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=STATIC, check_dir=False)  # no disk access here: the loop may be running

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response

    def __repr__(self) -> str:  # pragma: no cover
        return "Assets()"
