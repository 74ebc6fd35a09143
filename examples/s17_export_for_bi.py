"""17. Export a CRM slice for BI: page through deals (reads only), write CSV to stdout or a file."""

import csv
import io

from examples._agent import Agent, main

TITLE = "Export a CRM slice for BI (paged reads, CSV)"
PACKS = ["core"]
COLUMNS = ["ID", "TITLE", "STAGE_ID", "OPPORTUNITY", "CURRENCY_ID", "DATE_CREATE"]


def run(agent: Agent, limit: int = 500) -> dict:
    rows = agent.list_all("crm.deal.list", {"select": COLUMNS, "order": {"ID": "ASC"}}, limit=limit)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return {"rows": len(rows), "csv": buffer.getvalue()}


if __name__ == "__main__":
    main(run)
