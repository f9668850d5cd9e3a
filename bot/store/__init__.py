"""The bridge's durable state: SQLite behind the Store class."""

from aiohttp import web

from .sqlite import NewDelivery, Store, utcnow

__all__ = ["STORE", "NewDelivery", "Store", "utcnow"]

STORE: web.AppKey[Store] = web.AppKey("store")
