import os

from django.core import checks
from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=100)


@checks.register()
def broken_when_asked(app_configs, **kwargs):
    """A system check that fails under BREAK_CHECKS=1."""
    if os.environ.get("BREAK_CHECKS") == "1":
        return [checks.Error("BREAK_CHECKS is set", id="e2e.E001")]
    return []
