"""Planning: groups and units, the plan, shards and recorded durations.

Pure functions of test ids, classes and numbers: no processes, no databases.
"""
