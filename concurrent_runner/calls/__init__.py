"""Concurrent calls (``concurrent``: ``call_concurrently`` and friends), the
call server that forks them (``server``, the child side), and the
cross-process sync helpers (``sync``).
"""
