from django.db import models


class Tally(models.Model):
    name = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)
