"""The data officer's journey: a folder of messy cooperative exports → ingest → status → fix → re-run.

The county centre's data officer gathers this month's exports: good files from the cooperatives' own
bookkeeping (the simulated world's feed, each listed in its manifest with its rows and malformed rows)
and the bad files real feeds bring: empty CSV and JSON Lines files, a Parquet export cut short, an HTML
error page saved as .parquet, a spreadsheet saved in GB18030, a CSV with a stray quote on line 3, a JSON
Lines file with a byte-order mark, ids that are not ids, and a CRLF re-export of a file already there.
They run `coopscore ingest FOLDER --json` into their own data folder, read what it says, re-send the
cut-short file, run it again, and check `coopscore events stats`. Only the CLI is used.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.journeys.conftest import Cli, JourneyWorld, journey_env

BAD_IDS = ["m" * 10_000, "M00\x0001", "M\u202e0001", "../../etc/passwd", 'M"0001', "M'0001"]


@dataclass
class FeedFile:
    """One export copied from the world's feed, with what its manifest says it holds."""

    name: str  # path inside the exports folder
    rows: int
    malformed: int


@dataclass
class Officer:
    """Everything the officer saw: the runs' exit codes and reports, and the stats after each."""

    exports: Path
    good: list[FeedFile]
    special: dict[str, FeedFile]  # the bad-file kinds made from feed files, by kind
    first: tuple[int, dict[str, Any]]
    stats_first: dict[str, Any]
    after_fix: tuple[int, dict[str, Any]]
    stats_after_fix: dict[str, Any]
    all_fixed: tuple[int, dict[str, Any]]
    stats_text: str  # `coopscore events stats` as a person reads it

    def source(self, report: dict[str, Any], name: str) -> dict[str, Any]:
        """The report's entry for the file at `name` inside the exports folder."""
        matches = [s for s in report["sources"] if s["source"] == str(self.exports / name)]
        assert len(matches) == 1, f"{name} not reported once: {[s['source'] for s in report['sources']]}"
        return matches[0]


def _feed_files(world: JourneyWorld) -> dict[str, FeedFile]:
    manifest = json.loads((world.world_dir / "manifest.json").read_text())
    return {
        name: FeedFile(name, entry["rows"], entry["malformed"])
        for name, entry in sorted(manifest["event_files"].items())
        if entry["rows"] >= 5
    }


def _pick(files: dict[str, FeedFile], used: set[str], *, suffix: str, malformed: bool | None) -> FeedFile:
    """The first feed file not used yet with this suffix, with or without malformed rows (None: any)."""
    chosen = next(
        f
        for n, f in files.items()
        if n not in used and n.endswith(suffix) and malformed in (None, f.malformed > 0)
    )
    used.add(chosen.name)
    return chosen


def _build_exports(world: JourneyWorld, exports: Path) -> tuple[list[FeedFile], dict[str, FeedFile], bytes]:
    """Write the month's exports; returns the good files, the special ones, and the intact Parquet."""
    feed, used = _feed_files(world), set[str]()
    # Most of the world's files carry a few malformed rows; a clean file is the exception.
    good = [_pick(feed, used, suffix=".csv", malformed=m) for m in (True, True, False)]
    good += [_pick(feed, used, suffix=".jsonl", malformed=m) for m in (True, False)]
    for f in good:
        (exports / f.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world.world_dir / f.name, exports / f.name)
    events = exports / "events" / "inbox"
    events.mkdir(parents=True)
    (events / "empty.csv").write_bytes(b"")
    (events / "empty.jsonl").write_bytes(b"")
    (events / "garbage.parquet").write_bytes(b"<html><body>502 Bad Gateway</body></html>\n" * 20)

    special: dict[str, FeedFile] = {}
    # Another system's Parquet export of a month, cut short by a failed upload.
    source = _pick(feed, used, suffix=".csv", malformed=False)
    table = pacsv.read_csv(
        world.world_dir / source.name,
        convert_options=pacsv.ConvertOptions(column_types=_all_text(world.world_dir / source.name)),
    )
    intact = exports.parent / "intact.parquet"
    pq.write_table(table, intact)
    data = intact.read_bytes()
    (events / "truncated.parquet").write_bytes(data[: len(data) // 2])
    special["truncated"] = FeedFile("events/inbox/truncated.parquet", source.rows, 0)
    # A spreadsheet tool's CSV in GB18030 (product names are Chinese).
    source = _pick(feed, used, suffix=".csv", malformed=None)
    text = (world.world_dir / source.name).read_text(encoding="utf-8")
    (events / "gb18030.csv").write_bytes(text.encode("gb18030"))
    special["gb18030"] = FeedFile("events/inbox/gb18030.csv", source.rows, source.malformed)
    # One stray quote on line 3 (the second record).
    source = _pick(feed, used, suffix=".csv", malformed=False)
    lines = (world.world_dir / source.name).read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[2].split(",")
    fields[2] = '"' + fields[2]
    lines[2] = ",".join(fields)
    (events / "quote.csv").write_text("".join(lines), encoding="utf-8")
    special["quote"] = FeedFile("events/inbox/quote.csv", source.rows, 1)
    # JSON Lines from an app that writes a byte-order mark.
    source = _pick(feed, used, suffix=".jsonl", malformed=None)
    (events / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (world.world_dir / source.name).read_bytes())
    special["bom"] = FeedFile("events/inbox/bom.jsonl", source.rows, source.malformed)
    # Ids that are not ids, on real records of another month (the other records are left as they are).
    source = _pick(feed, used, suffix=".csv", malformed=False)
    lines = (world.world_dir / source.name).read_text(encoding="utf-8").splitlines(keepends=True)
    for i, bad_id in enumerate(BAD_IDS, start=1):
        fields = lines[i].split(",")
        fields[1] = f'"{bad_id.replace(chr(34), chr(34) * 2)}"'
        lines[i] = ",".join(fields)
    (events / "bad_ids.csv").write_text("".join(lines), encoding="utf-8")
    special["bad_ids"] = FeedFile("events/inbox/bad_ids.csv", source.rows, len(BAD_IDS))
    # The same export saved again by another tool: CRLF line endings, a new name.
    again = good[0]
    crlf = (world.world_dir / again.name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (exports / "events" / "resent").mkdir()
    (exports / "events" / "resent" / "copy.csv").write_bytes(crlf)
    special["reexport"] = FeedFile("events/resent/copy.csv", again.rows, again.malformed)
    return good, special, data


def _all_text(path: Path) -> dict[str, Any]:
    import pyarrow as pa

    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    return {name: pa.string() for name in header}


@pytest.fixture(scope="module")
def officer(journey_world: JourneyWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Officer]:
    root = tmp_path_factory.mktemp("data-officer")
    cli = Cli(journey_env(root), root)
    exports = root / "exports"
    good, special, intact = _build_exports(journey_world, exports)

    first = cli.json("ingest", str(exports), expect=(0, 4))
    _, stats_first = cli.json("events", "stats")
    # The cooperative sends the cut-short file again, whole.
    (exports / special["truncated"].name).write_bytes(intact)
    after_fix = cli.json("ingest", str(exports), expect=(0, 4))
    _, stats_after_fix = cli.json("events", "stats")
    # And the HTML page saved as .parquet is deleted: nothing of the month's exports is left failing.
    (exports / "events" / "inbox" / "garbage.parquet").unlink()
    all_fixed = cli.json("ingest", str(exports), expect=(0, 4))
    stats_text = cli.run("events", "stats").stdout
    yield Officer(
        exports, good, special, first, stats_first, after_fix, stats_after_fix, all_fixed, stats_text
    )


def test_the_run_says_partly_failed_and_names_each_bad_file(officer: Officer) -> None:
    code, report = officer.first
    assert code == 4
    for name in ("truncated.parquet", "garbage.parquet"):
        source = officer.source(report, f"events/inbox/{name}")
        assert source["status"] == "failed"
        assert source["reason"].startswith(name), source["reason"]
        assert source["accepted"] == 0
    for name in ("empty.csv", "empty.jsonl"):
        source = officer.source(report, f"events/inbox/{name}")
        assert (source["status"], source["rows_read"], source["reason"]) == ("empty", 0, None)
    assert report["files"]["failed"] >= 2


def test_the_good_files_are_stored_in_full(officer: Officer) -> None:
    _, report = officer.first
    for feed in officer.good:
        source = officer.source(report, feed.name)
        assert source["status"] == ("stored with quarantined rows" if feed.malformed else "stored"), source
        assert (source["rows_read"], source["quarantined"]) == (feed.rows, feed.malformed), source
        assert source["accepted"] + source["duplicates"] == feed.rows - feed.malformed
    # What the run stored is what the event log now holds.
    assert officer.stats_first["events"] == report["totals"]["accepted"]
    for source in report["sources"]:
        assert source["rows_read"] == source["accepted"] + source["duplicates"] + source["quarantined"]


def test_ids_that_are_not_ids_are_quarantined_naming_the_column(officer: Officer) -> None:
    _, report = officer.first
    feed = officer.special["bad_ids"]
    source = officer.source(report, feed.name)
    assert source["status"] == "stored with quarantined rows"
    assert (source["rows_read"], source["quarantined"]) == (feed.rows, len(BAD_IDS))
    quarantine = officer.stats_first["quarantine"]
    assert quarantine["by_source"][str(officer.exports / feed.name)] == len(BAD_IDS)
    not_ids = [reason for reason in quarantine["by_reason"] if reason.startswith("member_id: not a valid id")]
    assert len(not_ids) == 1 and quarantine["by_reason"][not_ids[0]] == len(BAD_IDS)


def test_a_reexport_adds_nothing_and_no_second_copy_of_its_bad_rows(officer: Officer) -> None:
    _, report = officer.first
    feed = officer.special["reexport"]
    source = officer.source(report, feed.name)
    assert source["accepted"] == 0
    assert source["duplicates"] == feed.rows - feed.malformed
    assert source["quarantined"] == source["quarantined_before"] == feed.malformed > 0
    # Quarantine holds each bad record once: what was quarantined, less what was there already.
    totals = report["totals"]
    assert officer.stats_first["quarantine"]["rows"] == totals["quarantined"] - totals["quarantined_before"]


def test_after_the_fix_a_rerun_stores_only_that_files_rows(officer: Officer) -> None:
    _, report = officer.after_fix
    feed = officer.special["truncated"]
    fixed = officer.source(report, feed.name)
    assert fixed["status"] == "stored"
    assert fixed["rows_read"] == feed.rows
    assert fixed["accepted"] > 0 and fixed["accepted"] + fixed["duplicates"] == feed.rows
    assert report["totals"]["accepted"] == fixed["accepted"]
    for good in officer.good:
        assert officer.source(report, good.name)["skipped_as_already_ingested"]
    assert officer.stats_after_fix["events"] == officer.stats_first["events"] + fixed["accepted"]
    still_failed = {Path(f["source"]).name for f in officer.stats_after_fix["files"]["failed"]}
    assert "truncated.parquet" not in still_failed and "garbage.parquet" in still_failed


def test_a_gb18030_export_is_read_as_such(officer: Officer) -> None:
    feed = officer.special["gb18030"]
    source = officer.source(officer.first[1], feed.name)
    # Every product name decoded right, or its record would fail the product list and be quarantined.
    assert source["status"] != "failed"
    assert (source["rows_read"], source["quarantined"]) == (feed.rows, feed.malformed)


def test_a_stray_quote_costs_only_its_record(officer: Officer) -> None:
    feed = officer.special["quote"]
    source = officer.source(officer.first[1], feed.name)
    assert (source["rows_read"], source["quarantined"]) == (feed.rows, 1)
    assert source["accepted"] + source["duplicates"] == feed.rows - 1


def test_a_byte_order_mark_costs_nothing(officer: Officer) -> None:
    feed = officer.special["bom"]
    source = officer.source(officer.first[1], feed.name)
    assert source["status"] != "failed"
    assert (source["rows_read"], source["quarantined"]) == (feed.rows, feed.malformed)


def test_once_every_file_is_fixed_the_run_exits_0(officer: Officer) -> None:
    code, report = officer.all_fixed
    assert (code, report["files"]["failed"]) == (0, 0)


def test_events_stats_lists_recent_months_and_sums_the_earlier_ones(officer: Officer) -> None:
    """Join dates reach back years: the table shows 24 months and one row for everything before."""
    months = officer.stats_after_fix["by_month"]
    assert len(months) > 24
    shown = [line for line in officer.stats_text.splitlines() if re.search(r"\b\d{4}-\d{2}\b", line)]
    earlier = sum(list(months.values())[:-24])
    assert f"before {list(months)[-24]}" in shown[0] and f"{earlier:,}" in shown[0]
    assert len(shown) == 25
