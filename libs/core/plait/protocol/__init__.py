"""The wire format: every subject, header and request/reply shape that plait's processes and clients exchange.

The commands and events themselves are the pure core's (``plait.core.commands``, ``plait.core.events``); this
package names where they travel and shapes the catalog's queries. ``plait schema export`` and
docs/wire-format.md are derived from it.
"""
