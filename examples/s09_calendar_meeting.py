"""9. A meeting in the calendar with attendees and reminders."""

from datetime import UTC, datetime, timedelta

from examples._agent import Agent, main

TITLE = "Put a meeting with attendees and reminders into the calendar"
PACKS = ["services"]


def run(agent: Agent, attendees: tuple[int, ...] = (1, 2, 3)) -> dict:
    me = int(agent.call("user.current")["ID"])
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    event_id = int(agent.call("calendar.event.add", {
        "type": "user", "ownerId": me, "section": 1, "name": "Quarterly review with ACME",
        "description": "Agenda: renewal, seats, support plan.",
        "from": start.strftime("%Y-%m-%d %H:%M:%S"), "to": (start + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "timezone_from": "UTC", "timezone_to": "UTC", "is_meeting": "Y", "host": me,
        "attendees": list(attendees), "remind": [{"type": "min", "count": 15}, {"type": "day", "count": 1}],
        "meeting": {"notify": True, "reinvite": False, "allow_invite": False}},
        reason="Book the quarterly review"))
    event = agent.call("calendar.event.getbyid", {"id": event_id})
    return {"event_id": event_id, "attendees": event["ATTENDEES_CODES"], "remind": event["REMIND"]}


if __name__ == "__main__":
    main(run)
