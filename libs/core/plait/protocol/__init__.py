"""The wire format: every subject, header and request/reply shape that plait's processes and clients exchange.

The commands and events themselves are the pure core's (``plait.core.commands``, ``plait.core.events``); this
package names where they travel (``subjects``), the headers they carry (``headers``), and the shapes of the
requests and replies (``executions``, ``cache``, ``lineage``, ``registry``, ``queries``, ``rebuild``,
``quarantine``, ``rejections``). ``schema`` registers them all: ``plait schema export`` writes JSON Schemas from it,
and a test checks that docs/wire-format.md names every subject, header and schema in it.
"""
