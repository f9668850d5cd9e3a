"""The bridge's durable state: SQLite behind the Store class."""

from .sqlite import NewDelivery, Store, utcnow

__all__ = ["NewDelivery", "Store", "utcnow"]
