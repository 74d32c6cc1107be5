from typing import Any

from aiohttp import web

__all__ = ["ENV_KEY"]

ENV_KEY: web.AppKey[Any]
