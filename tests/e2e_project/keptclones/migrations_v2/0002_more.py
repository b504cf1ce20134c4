"""The migration added between two --keepdb runs."""

from django.db import migrations


def plant(apps, schema_editor):
    apps.get_model("keptclones", "Kept").objects.using(
        schema_editor.connection.alias
    ).create(name="v2")


class Migration(migrations.Migration):
    dependencies = [("keptclones", "0001_initial")]

    operations = [migrations.RunPython(plant, migrations.RunPython.noop)]
