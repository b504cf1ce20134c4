from django.db import migrations, models


def plant(apps, schema_editor):
    apps.get_model("keptclones", "Kept").objects.using(
        schema_editor.connection.alias
    ).create(name="v1")


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="Kept",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
        migrations.RunPython(plant, migrations.RunPython.noop),
    ]
