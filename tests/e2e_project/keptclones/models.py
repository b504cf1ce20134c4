from django.db import models


class Kept(models.Model):
    name = models.CharField(max_length=50)
