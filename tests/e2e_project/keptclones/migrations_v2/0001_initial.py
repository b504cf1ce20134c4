"""The same first migration (KEPT_V2=1 points MIGRATION_MODULES here)."""

import importlib

Migration = importlib.import_module("keptclones.migrations.0001_initial").Migration
