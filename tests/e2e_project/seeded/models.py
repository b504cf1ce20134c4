from django.db import models


class Seed(models.Model):
    name = models.CharField(max_length=50)
