"""The parallel run: the parent loop, worker processes, the fork server,
the messages between them, and the worker side (``worker``), which imports
nothing from the parent side.
"""
