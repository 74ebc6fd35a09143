from django.db import migrations, models


class Migration(migrations.Migration):
    """Schema for per-portal keyed chains. The old single head row is kept as LegacyAuditHead
    until 0004 has verified and re-chained the existing entries."""

    dependencies = [("audit", "0002_audit_head_row")]

    operations = [
        migrations.AlterField(model_name="auditentry", name="seq", field=models.PositiveBigIntegerField()),
        migrations.AlterField(model_name="auditentry", name="hash", field=models.CharField(max_length=64)),
        migrations.AddField(
            model_name="auditentry", name="chain",
            field=models.CharField(default="system", max_length=80), preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry", name="key_id",
            field=models.CharField(default="", max_length=32), preserve_default=False,
        ),
        migrations.AlterModelOptions(
            name="auditentry", options={"ordering": ["chain", "seq"], "verbose_name_plural": "audit entries"},
        ),
        migrations.RenameModel(old_name="AuditHead", new_name="LegacyAuditHead"),
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                ("chain", models.CharField(max_length=80, primary_key=True, serialize=False)),
                ("seq", models.PositiveBigIntegerField(default=0)),
                ("hash", models.CharField(default="0" * 64, max_length=64)),
            ],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("chain", models.CharField(max_length=80)),
                ("seq", models.PositiveBigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("at", models.CharField(max_length=40)),
                ("kid", models.CharField(max_length=32)),
                ("sig", models.CharField(max_length=64)),
            ],
            options={
                "ordering": ["chain", "seq"],
                "indexes": [models.Index(fields=["chain", "seq"], name="audit_ckpt_chain_seq")],
            },
        ),
    ]
