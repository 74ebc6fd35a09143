"""The method catalog: both data files load completely, lookups are case-insensitive."""

import csv
from pathlib import Path

import pytest

from apps.policy import catalog
from apps.policy.catalog import MethodInfo, all_methods, lookup

SHARED = Path(__file__).resolve().parents[4] / "shared" / "bitrix24"


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_catalog_row_count():
    methods = all_methods()
    assert len(methods) == 1668
    assert len(_rows(catalog.V2_FILE)) == 1668
    assert len(_rows(catalog.REST3_FILE)) == 109
    assert sum(m.rest3 for m in methods) == 109
    # 109 REST 3.0 methods, six of which also have a v2 page
    assert sum(m.v2 for m in methods) == 1668 - 109 + 6


def test_every_row_is_found_by_its_own_spelling_and_lowercase():
    for row in _rows(catalog.V2_FILE):
        info = lookup(row["method"])
        assert info is not None, row["method"]
        assert info.name == row["method"]
        assert info.scope == row["scope"]
        assert info.risk == row["risk"]
        assert info.doc_path == row["doc_path"]
        assert lookup(row["method"].lower()) is info
        assert lookup(row["method"].upper()) is info


def test_all_methods_is_sorted_and_unique():
    names = [m.normalized for m in all_methods()]
    assert names == sorted(names)
    assert len(set(names)) == len(names)


def test_data_files_are_copies_of_the_shared_ones():
    assert SHARED.exists(), f"{SHARED} is missing: the catalog's source of truth must sit beside the repository"
    assert catalog.V2_FILE.read_bytes() == (SHARED / "methods.csv").read_bytes()
    assert catalog.REST3_FILE.read_bytes() == (SHARED / "methods_rest3.csv").read_bytes()


def test_doc_spelling_is_kept():
    info = lookup("DISK.FILE.GETEXTERNALLINK")
    assert info == MethodInfo(
        name="disk.file.getExternalLink",
        scope="disk",
        risk="write",
        doc_path="api-reference/disk/file/disk-file-get-external-link.md",
        rest3=False,
        v2=True,
    )
    assert lookup("catalog.roundingrule.list").name.lower() == "catalog.roundingrule.list"


@pytest.mark.parametrize(
    "name",
    [
        "tasks.task.add",
        "tasks.task.get",
        "tasks.task.list",
        "tasks.task.update",
        "tasks.task.delete",
        "tasks.task.result.list",
    ],
)
def test_names_with_both_versions(name):
    info = lookup(name)
    assert info.v2 and info.rest3
    assert info.scope == "task"  # the v2 page's scope
    assert "rest-v3" not in info.doc_path


@pytest.mark.parametrize(
    "name", ["mail.message.list", "humanresources.node.add", "rest.scope.list", "note.document.add"]
)
def test_rest3_only_names(name):
    info = lookup(name)
    assert info.rest3 and not info.v2


def test_lookup_accepts_decorated_spellings_and_rejects_garbage():
    assert lookup(" /CRM.Deal.List.json ").name == "crm.deal.list"
    assert lookup("crm%2Edeal%2Elist").name == "crm.deal.list"
    assert lookup("vendor.thing.get") is None
    assert lookup("crm.deal.list?x=1") is None
    assert lookup("") is None


def test_scopes_split_on_semicolon():
    info = lookup("voximplant.infocall.startwithtext")
    assert info.scopes == ("telephony", "call")
    assert lookup("rest.scope.list").scopes == ()


def test_loader_rejects_a_bad_header(tmp_path, monkeypatch):
    bad = tmp_path / "methods.csv"
    bad.write_text("name,scope,risk,doc_path\nx.y,basic,read,p.md\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        catalog._read_rows(bad)


def test_loader_rejects_a_bad_risk_and_a_bad_name(tmp_path):
    bad = tmp_path / "methods.csv"
    bad.write_text("method,scope,risk,doc_path\nx.y,basic,harmless,p.md\n", encoding="utf-8")
    with pytest.raises(ValueError, match="risk"):
        catalog._read_rows(bad)
    bad.write_text("method,scope,risk,doc_path\nx..y,basic,read,p.md\n", encoding="utf-8")
    with pytest.raises(ValueError, match="name"):
        catalog._read_rows(bad)
