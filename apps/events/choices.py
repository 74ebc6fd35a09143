from django.db import models


class EventSource(models.TextChoices):
    ONLINE = "online", "Posted to the handler"
    OFFLINE = "offline", "Fetched from the offline queue"


class EventStatus(models.TextChoices):
    RECEIVED = "received", "Stored, not processed yet"
    FAILED = "failed", "Processing failed; will be retried"
    PROCESSED = "processed", "Processed (in the agent feed)"
    DEAD = "dead", "Dead letter (failed too often)"


#: Statuses a processing attempt still has to settle.
OPEN_STATES = frozenset({EventStatus.RECEIVED, EventStatus.FAILED})
