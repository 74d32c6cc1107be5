"""mkdocs hook: write the host's OpenAPI document into the site as ``openapi.json``.

The document is built from ``durableflow_runtime.openapi.build_openapi()`` at every
build, so the HTTP reference rendered from it cannot drift from the server; no copy is
kept in the repository.
"""

from __future__ import annotations

import json
from typing import Any

from mkdocs.structure.files import File, Files

from durableflow_runtime.openapi import build_openapi

#: Where the document lands in the site (and the path the reference page gives).
OPENAPI_PATH = "openapi.json"


def on_files(files: Files, config: Any) -> Files:
    """Add the generated ``openapi.json`` to the documentation files."""
    content = json.dumps(build_openapi(), indent=2, sort_keys=False) + "\n"
    files.append(File.generated(config, OPENAPI_PATH, content=content))
    return files
