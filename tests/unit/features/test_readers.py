"""File readers: each kind of bad file, the encodings, CSV quoting faults, and Excel sheets.

Every test writes a real file and reads it through the public API; a record the reader sees is either
a parsed record or a BrokenLine, never lost.
"""

from __future__ import annotations

import csv
import io
import pickle
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.readers import (
    DATA_SUFFIXES,
    MAX_RECORD_LINES,
    BrokenLine,
    FileReadError,
    canonical_encoding,
    is_empty,
    iter_chunks,
    read_header,
)
from tests.utils.xlsx import write_xlsx

HEADER = ["event_id", "member_id", "village_id", "amount_cny"]


def _rows(count: int) -> list[list[str]]:
    """Rows in the HEADER layout, with Chinese text and a comma that needs quoting now and then."""
    villages = ["王庄06", "李家沟", "东村, 二组", "𠀀屯"]  # 𠀀 is outside GBK: four bytes in GB18030
    return [[f"e{i:05d}", f"m{i % 37:04d}", villages[i % 4], f"{i * 1.5:.1f}"] for i in range(count)]


def _csv_text(
    rows: list[list[str]], *, header: list[str] = HEADER, newline: str = "\n", quote_all: bool = False
) -> str:
    out = io.StringIO()
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    csv.writer(out, lineterminator=newline, quoting=quoting).writerows([header, *rows])
    return out.getvalue()


def _read(
    path: Path, chunk_rows: int = 10_000, **options: str
) -> tuple[list[list[str | None]], list[BrokenLine]]:
    """Every record (as its values, in column order) and every broken line of a file."""
    records: list[list[str | None]] = []
    broken: list[BrokenLine] = []
    for chunk in iter_chunks(path, chunk_rows, **options):
        assert chunk.first_record_index == len(records)
        records += [list(row.values()) for row in chunk.records.to_pylist()]
        broken += chunk.broken
    return records, broken


# --- empty and unreadable files ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", DATA_SUFFIXES)
def test_a_zero_byte_file_has_no_header_and_no_chunk(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    assert read_header(path) == []
    assert list(iter_chunks(path, 100)) == []
    assert is_empty(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("header-only.csv", "event_id,member_id\n"),
        ("header-only-no-newline.csv", "event_id,member_id"),
        ("header-and-blank-lines.csv", "event_id,member_id\r\n\r\n\n"),
        ("blank-lines.csv", "\n\n\n"),
        ("blank-lines.jsonl", "\n  \n\r\n"),
    ],
)
def test_a_file_without_records_yields_no_chunk(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    assert list(iter_chunks(path, 100)) == []
    assert is_empty(path)
    assert read_header(path) == (["event_id", "member_id"] if "header" in name else [])


def test_is_empty_tells_one_record_from_none(tmp_path: Path) -> None:
    csv_path = tmp_path / "one.csv"
    csv_path.write_text("event_id\n\ne1\n", encoding="utf-8")
    jsonl_path = tmp_path / "one.jsonl"
    jsonl_path.write_text('\n{"event_id": "e1"}\n', encoding="utf-8")
    parquet_path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"event_id": pa.array([], pa.string())}), parquet_path)
    assert not is_empty(csv_path)
    assert not is_empty(jsonl_path)
    assert is_empty(parquet_path)
    assert list(iter_chunks(parquet_path, 100)) == []
    assert read_header(parquet_path) == ["event_id"]


def _parquet(path: Path, rows: int = 5000) -> Path:
    table = pa.table(
        {"event_id": [f"e{i}" for i in range(rows)], "amount_cny": [i * 0.5 for i in range(rows)]}
    )
    pq.write_table(table, path, row_group_size=1000, compression="zstd")
    return path


def test_parquet_is_read_by_row_group_or_in_batches_of_a_large_one(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "a.parquet", rows=5000)  # row groups of 1000
    assert [c.records.num_rows for c in iter_chunks(path, 1000)] == [1000] * 5
    assert [c.records.num_rows for c in iter_chunks(path, 300)] == [300, 300, 300, 100] * 5
    chunks = list(iter_chunks(path, 300))
    assert [c.first_record_index for c in chunks] == [
        sum(c.records.num_rows for c in chunks[:i]) for i in range(20)
    ]
    assert pa.concat_tables([c.records for c in chunks]).column("event_id").to_pylist() == [
        f"e{i}" for i in range(5000)
    ]


def test_a_truncated_parquet_file_is_a_file_read_error(tmp_path: Path) -> None:
    whole = _parquet(tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "exports" / "coop7.parquet"
    path.parent.mkdir()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FileReadError) as header_error:
        read_header(path)
    with pytest.raises(FileReadError) as read_error:
        list(iter_chunks(path, 100))
    for error in (header_error.value, read_error.value):
        assert error.path == path
        assert str(error).startswith(f"{path}: not a readable Parquet file (")
        assert "\n" not in str(error)
    with pytest.raises(FileReadError):
        is_empty(path)


def test_garbage_bytes_named_parquet_are_a_file_read_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(FileReadError, match="not a readable Parquet file"):
        read_header(path)
    with pytest.raises(FileReadError, match="not a readable Parquet file"):
        list(iter_chunks(path, 100))


def test_parquet_with_corrupt_data_pages_fails_as_a_file_read_error(tmp_path: Path) -> None:
    # The footer is intact, so the file opens; the damage shows only when its pages are read.
    data = bytearray(_parquet(tmp_path / "a.parquet", rows=50_000).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path = tmp_path / "damaged.parquet"
    path.write_bytes(bytes(data))
    assert read_header(path) == ["event_id", "amount_cny"]
    with pytest.raises(FileReadError, match="not a readable Parquet file"):
        list(iter_chunks(path, 1000))


@pytest.mark.parametrize("column", ["event_id", "coop_id"])  # plain text, and read as a dictionary
def test_parquet_text_that_is_not_utf8_is_a_file_read_error(tmp_path: Path, column: str) -> None:
    # Parquet readers hand string pages over unchecked; found by the property test: DuckDB then failed
    # fatally on the invalid bytes and the whole ingest's connection died instead of one file failing.
    data = b"ok-1" + b"\xff\xfe" + b"ok-3"
    offsets = pa.array([0, 4, 6, 10], type=pa.int32()).buffers()[1]
    broken = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(data)])
    other = "coop_id" if column == "event_id" else "event_id"
    path = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({column: broken, other: ["a", "b", "c"]}), path)
    with pytest.raises(FileReadError, match=r"damaged\.parquet: not a readable Parquet file \(.*UTF8"):
        list(iter_chunks(path, 100))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"event_id,member_id\ne1,m1\n"])
def test_an_unreadable_xlsx_is_a_file_read_error(tmp_path: Path, content: bytes) -> None:
    whole = write_xlsx(tmp_path / "whole.xlsx", {"Sheet1": [["event_id"], ["e1"]]}).read_bytes()
    path = tmp_path / "bad.xlsx"
    path.write_bytes(content or whole[: len(whole) // 2])
    with pytest.raises(FileReadError, match=r"bad\.xlsx: not a readable Excel \.xlsx file"):
        read_header(path)
    with pytest.raises(FileReadError, match="not a readable Excel"):
        list(iter_chunks(path, 100))


def test_an_unsupported_suffix_is_a_file_read_error(tmp_path: Path) -> None:
    path = tmp_path / "members.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(FileReadError, match=r"members\.xls: unsupported file type '\.xls'"):
        list(iter_chunks(path, 100))
    with pytest.raises(FileReadError, match="unsupported file type"):
        read_header(path)


def test_a_file_the_system_will_not_read_is_a_file_read_error(tmp_path: Path) -> None:
    folder = tmp_path / "exports.csv"
    folder.mkdir()
    with pytest.raises(FileReadError, match=r"exports\.csv: cannot read the file \(Is a directory\)"):
        list(iter_chunks(folder, 100))
    with pytest.raises(FileReadError, match=r"missing\.jsonl: cannot read the file \(No such file"):
        read_header(tmp_path / "missing.jsonl")


def test_file_read_error_is_one_actionable_line_and_survives_pickling() -> None:
    error = FileReadError(Path("exports/coop7.csv"), "not valid UTF-8 or GB18030", byte_offset=1234, line=9)
    assert str(error) == "exports/coop7.csv: not valid UTF-8 or GB18030 at byte 1234 (line 9)"
    assert str(FileReadError(Path("a.csv"), "no header", line=1)) == "a.csv: no header at line 1"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.line, copy.byte_offset, str(copy)) == (
        error.path,
        error.reason,
        9,
        1234,
        str(error),
    )


# --- encodings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [None, "gb18030", "GBK"])
def test_gb18030_csv_is_read_as_the_text_it_holds(tmp_path: Path, declared: str | None) -> None:
    rows = _rows(300)
    path = tmp_path / "gbk.csv"
    path.write_bytes(_csv_text(rows, header=["event_id", "member_id", "村", "amount_cny"]).encode("gb18030"))
    options = {"encoding": declared} if declared else {}
    assert read_header(path, **options) == ["event_id", "member_id", "村", "amount_cny"]
    records, broken = _read(path, chunk_rows=64, **options)
    assert records == rows
    assert broken == []


def test_gb18030_jsonl_is_read_as_the_text_it_holds(tmp_path: Path) -> None:
    rows = _rows(50)
    lines = [f'{{"event_id": "{r[0]}", "village_id": "{r[2]}", "amount_cny": {r[3]}}}' for r in rows]
    path = tmp_path / "gbk.jsonl"
    path.write_bytes("\n".join(lines).encode("gb18030"))
    assert read_header(path) == ["event_id", "village_id", "amount_cny"]
    records, broken = _read(path, chunk_rows=16)
    assert [dict(zip(read_header(path), r, strict=True)) for r in records] == [
        {"event_id": r[0], "village_id": r[2], "amount_cny": r[3]} for r in rows
    ]
    assert broken == []


def test_a_utf8_bom_is_not_part_of_the_first_column_or_record(tmp_path: Path) -> None:
    rows = _rows(5)
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + _csv_text(rows, newline="\r\n").encode("utf-8"))
    assert read_header(csv_path) == HEADER
    assert _read(csv_path) == (rows, [])
    jsonl_path = tmp_path / "bom.jsonl"
    jsonl_path.write_bytes(
        b"\xef\xbb\xbf" + '{"event_id": "e1", "村": "王庄06"}\n{"event_id": "e2"}\n'.encode()
    )
    assert read_header(jsonl_path) == ["event_id", "村"]
    assert _read(jsonl_path) == ([["e1", "王庄06"], ["e2", None]], [])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bytes_in_neither_utf8_nor_gb18030_fail_the_file_at_their_offset(tmp_path: Path, suffix: str) -> None:
    good = "\n".join(['{"event_id": "e1", "village_id": "v06"}'] * 40) + "\n"
    if suffix == ".csv":
        good = _csv_text([[f"e{i}", "m1", "v06", "1"] for i in range(40)])
    offset = len(good) + 4  # 0xFF: a byte neither encoding has
    path = tmp_path / f"coop7{suffix}"
    path.write_bytes(good.encode() + b"e41,\xff\xfe,x\n" + good.encode())
    with pytest.raises(FileReadError) as error:
        list(iter_chunks(path, 10))
    line = good.count("\n") + 1
    assert (error.value.byte_offset, error.value.line) == (offset, line)
    assert error.value.reason == "not valid UTF-8 or GB18030"
    assert str(error.value) == f"{path}: not valid UTF-8 or GB18030 at byte {offset} (line {line})"
    with pytest.raises(FileReadError, match=f"at byte {offset}"):
        read_header(path)  # the first MiB holds the bad byte


def test_utf8_text_with_a_gbk_line_is_not_read_as_gb18030(tmp_path: Path) -> None:
    # As GB18030, every byte here decodes (王庄06 in UTF-8 reads as three other characters), so only
    # the UTF-8 before the bad line tells that reading on would store mojibake.
    good = _csv_text([[f"e{i}", "m1", "王庄06", "1"] for i in range(40)]).encode()
    path = tmp_path / "merged.csv"
    path.write_bytes(good + "e41,m1,啊,1\n".encode("gbk") + good[good.index(b"\n") + 1 :])
    assert (good + "e41,m1,啊,1\n".encode("gbk")).decode("gb18030")  # it would decode
    with pytest.raises(FileReadError) as error:
        list(iter_chunks(path, 10))
    assert (error.value.reason, error.value.byte_offset, error.value.line) == (
        "not valid UTF-8",
        len(good) + 7,
        42,
    )


def test_a_utf8_bom_means_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv_text(_rows(3)).encode("gb18030"))
    with pytest.raises(FileReadError, match="not valid UTF-8 at byte"):
        list(iter_chunks(path, 10))


def test_a_bad_byte_past_the_first_block_is_found_and_a_character_across_blocks_is_not_one(
    tmp_path: Path,
) -> None:
    # Over 8 MiB of three-byte characters, so that one of them straddles the first block's end.
    line = "e1,m1,玉米玉米玉米玉米玉米玉米,1\n".encode()
    body = b"event_id,member_id,product,amount_cny\n" + line * ((9 << 20) // len(line))
    path = tmp_path / "big.csv"
    path.write_bytes(body)
    records, broken = _read(path, chunk_rows=100_000)
    assert len(records) == body.count(b"\n") - 1 and broken == []
    path.write_bytes(body + b"e2,m2,\xc0\xaf,1\n")  # an overlong encoding of "/": not UTF-8
    with pytest.raises(FileReadError) as error:
        list(iter_chunks(path, 100_000, encoding="utf-8"))
    assert (error.value.byte_offset, error.value.reason) == (len(body) + 6, "not valid UTF-8")


def test_a_declared_encoding_is_checked_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(_csv_text(_rows(8)).encode("gb18030"))
    with pytest.raises(FileReadError, match="not valid UTF-8 at byte"):
        list(iter_chunks(path, 100, encoding="utf-8"))
    with pytest.raises(ValueError, match="unsupported text encoding 'latin-1'"):
        list(iter_chunks(path, 100, encoding="latin-1"))
    assert [canonical_encoding(n) for n in ("UTF8", "utf-8-sig", "GBK", "gb2312", "GB18030")] == [
        "utf-8",
        "utf-8",
        "gb18030",
        "gb18030",
        "gb18030",
    ]


def test_utf16_text_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(_csv_text(_rows(3)).encode("utf-16"))
    with pytest.raises(FileReadError, match="UTF-16 text: save the export as UTF-8 or GB18030 at byte 0"):
        read_header(path)


# --- CSV quoting and field counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quote_all", "line_3"),
    [
        (False, 'e00001,m0001,"李家沟,1.5'),  # a value whose quote never closes, where few are quoted
        (True, '"e00001","m0001","李家沟,1.5'),  # a line cut short, where every value is quoted
    ],
)
def test_an_unterminated_quote_costs_only_its_own_line(tmp_path: Path, quote_all: bool, line_3: str) -> None:
    rows = _rows(739)
    lines = _csv_text(rows, quote_all=quote_all).splitlines()
    lines[2] = line_3
    path = tmp_path / "coop.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, broken = _read(path)
    assert [(b.line_number, b.text, b.reason) for b in broken] == [(3, line_3, "unterminated quote")]
    assert records == rows[:1] + rows[2:]
    assert len(records) == 738


def test_two_unterminated_quotes_are_two_broken_lines_not_one_record(tmp_path: Path) -> None:
    # An even number of quotes in all: counting quotes alone would take lines 3 to 10 for one record.
    rows = _rows(30)
    lines = _csv_text(rows).splitlines()
    lines[2] = 'e00001,m0001,"李家沟,1.5'
    lines[9] = 'e00008,m0008,"王庄06,12.0'
    path = tmp_path / "two.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, broken = _read(path)
    assert [(b.line_number, b.reason) for b in broken] == [
        (3, "unterminated quote"),
        (10, "unterminated quote"),
    ]
    assert records == [r for i, r in enumerate(rows) if i not in (1, 8)]


def test_a_quoted_value_may_span_lines_within_the_cap(tmp_path: Path) -> None:
    rows = _rows(200)
    rows[5][2] = "第一行\n第二行"
    rows[50][2] = 'a\r\nb, "c"\n' + "\n".join(["more"] * (MAX_RECORD_LINES - 3))  # exactly the cap
    path = tmp_path / "multi.csv"
    path.write_text(_csv_text(rows), encoding="utf-8", newline="")
    for chunk_rows in (10_000, 8):
        assert _read(path, chunk_rows=chunk_rows) == (rows, [])


def test_a_quoted_value_longer_than_the_cap_is_a_runaway_quote(tmp_path: Path) -> None:
    rows = _rows(20)
    rows[3][2] = "\n".join(f"part {i}" for i in range(MAX_RECORD_LINES + 1))
    path = tmp_path / "long.csv"
    path.write_text(_csv_text(rows), encoding="utf-8")
    records, broken = _read(path)
    assert (broken[0].line_number, broken[0].reason) == (5, "unterminated quote")
    assert records[:3] == rows[:3] and records[-16:] == rows[4:]
    # Every line of the runaway value is accounted for, as a record or a broken line.
    assert len(records) + len(broken) == 19 + MAX_RECORD_LINES + 1


def test_a_literal_quote_inside_an_unquoted_value_is_kept(tmp_path: Path) -> None:
    # Arrow reads 5"寸 as text; the odd quote must not send the rest of the file to quarantine.
    rows = _rows(300)
    for i in range(0, 300, 45):
        rows[i][2] = '5"寸'
    lines = [",".join(HEADER)] + [",".join(r).replace("东村, 二组", "东村") for r in rows]
    expected = [[v.replace("东村, 二组", "东村") for v in r] for r in rows]
    path = tmp_path / "inches.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for chunk_rows in (10_000, 20):
        assert _read(path, chunk_rows=chunk_rows) == (expected, [])


@pytest.mark.parametrize("fault", [None, 'e00001,m0001,"李家沟,1.5'])
def test_a_last_line_without_a_line_end_is_read(tmp_path: Path, fault: str | None) -> None:
    rows = _rows(30)
    lines = _csv_text(rows).splitlines()
    if fault:
        lines[2] = fault
    path = tmp_path / "no-end.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    records, broken = _read(path)
    assert records == [r for i, r in enumerate(rows) if not (fault and i == 1)]
    assert [b.line_number for b in broken] == ([3] if fault else [])


def test_blank_lines_and_a_huge_value_beside_an_unterminated_quote(tmp_path: Path) -> None:
    # Around a runaway quote the records are found line by line: blank lines are still no records,
    # and a value too long for Python's csv module is still Arrow's to read.
    rows = _rows(40)
    rows[20][2] = "长" * 200_000 + ", 短"  # quoted, and over the csv module's field size limit
    lines = _csv_text(rows).splitlines()
    lines[2] = 'e00001,m0001,"李家沟,1.5'
    lines[10:10] = ["", "", "\r"]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, broken = _read(path)
    assert [(b.line_number, b.reason) for b in broken] == [(3, "unterminated quote")]
    assert records == rows[:1] + rows[2:]


def test_a_literal_quote_before_a_multi_line_value_beside_an_unterminated_quote(tmp_path: Path) -> None:
    # Line 10 holds a literal quote, then opens a quoted value: an even count, yet the record goes on.
    rows = [[f"e{i:05d}", f"m{i:04d}", "王庄06", "1.5"] for i in range(30)]
    rows[8] = ["e00008", '5"寸', "两\n行", "1"]
    lines = [",".join(HEADER)] + [",".join(row) for row in rows]
    lines[2] = 'e00001,m0001,"李家沟,1.5'
    lines[9] = 'e00008,5"寸,"两\n行",1'
    path = tmp_path / "tricky.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, broken = _read(path)
    assert [(b.line_number, b.reason) for b in broken] == [(3, "unterminated quote")]
    assert records == rows[:1] + rows[2:]


def test_wrong_field_counts_are_broken_lines_at_their_line(tmp_path: Path) -> None:
    rows = _rows(100)
    lines = _csv_text(rows).splitlines()
    lines[10] = "e00009,m0009"
    lines[60] = "e00059,m0022,王庄06,1.0,extra"
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, broken = _read(path, chunk_rows=16)
    assert [(b.line_number, b.text, b.reason) for b in broken] == [
        (11, "e00009,m0009", "malformed line: expected 4 fields, found 2"),
        (61, "e00059,m0022,王庄06,1.0,extra", "malformed line: expected 4 fields, found 5"),
    ]
    assert records == [r for i, r in enumerate(rows) if i not in (9, 59)]


def test_crlf_line_endings_read_like_lf(tmp_path: Path) -> None:
    rows = _rows(120)
    rows[7][2] = "两行\r\n文字"  # a quoted line break is kept as it was
    text = _csv_text(rows, newline="\r\n")
    text = text.replace('\r\ne00030,m0030,"东村, 二组",45.0\r\n', "\r\ne00030,m0030\r\n")
    path = tmp_path / "crlf.csv"
    path.write_bytes(text.encode("gb18030"))
    records, broken = _read(path, chunk_rows=32)
    assert [(b.line_number, b.text) for b in broken] == [(32, "e00030,m0030")]
    assert records == [r for i, r in enumerate(rows) if i != 30]


@pytest.mark.parametrize("quote_all", [False, True])
def test_records_and_broken_lines_add_up_over_many_ranges(tmp_path: Path, quote_all: bool) -> None:
    # Faults of every kind in a file read in many byte ranges: nothing lost, nothing read twice, and
    # line numbers (which count records) still right after each fault.
    rows = _rows(20_000)
    for n in range(13, 20_000, 389):
        rows[n][2] = f"两行\n{n}"  # a quoted line break: one record over two lines
    faults: dict[int, str] = {}
    replaced: dict[int, str] = {}
    for n in range(7, 20_000, 1511):
        replaced[n] = (
            f'"e{n:05d}","m0001","unclosed {n},1' if quote_all else f'e{n:05d},m0001,"unclosed {n},1'
        )
        faults[n] = "unterminated quote"
    for n in range(300, 20_000, 997):
        replaced[n] = f"e{n:05d},short"
        faults[n] = "malformed line: expected 4 fields, found 2"
    expected = [r for i, r in enumerate(rows) if i not in faults]
    if not quote_all:
        for n in range(101, 20_000, 577):
            if n not in faults:
                replaced[n] = f'e{n:05d},m0001,5"寸,1'  # a literal quote, as Arrow reads it
                expected[expected.index(rows[n])] = [f"e{n:05d}", "m0001", '5"寸', "1"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(HEADER)
    for i, row in enumerate(rows):
        if i in replaced:
            out.write(replaced[i] + "\n")
        else:
            writer.writerow(row)
    path = tmp_path / "faults.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    chunks = list(iter_chunks(path, 1000))
    assert len(chunks) >= 8
    records, broken = _read(path, chunk_rows=1000)
    # The header is line 1 and every record before counts one line, however many it spans.
    assert {b.line_number: b.reason for b in broken} == {n + 2: reason for n, reason in faults.items()}
    assert records == expected


# --- Excel -------------------------------------------------------------------------------------------


def _workbook(path: Path) -> Path:
    members = [
        ["member_id", "joined", "recorded_at", "land_mu", "amount_cny", "verified", "note"],
        ["m0001", date(2024, 3, 1), datetime(2024, 3, 1, 8, 30), 12, 301.2, True, None],
        [],  # a blank row: no record
        ["m0002", date(2024, 12, 31), datetime(2025, 1, 2, 17, 0, 5), 3.0, 1e-3, False, "王庄06"],
        ["m0003", None, None, 1234567890123, 0.1 + 0.2, None, "NA"],
    ]
    other = [[], [None, "event_id", "coop_id"], [None, "e1", "c01"], [None, "e2", "c02", "stray"]]
    return write_xlsx(path, {"成员": members, "events": other})


def test_xlsx_first_sheet_reads_every_cell_as_csv_text(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "coop.xlsx")
    assert read_header(path) == [
        "member_id",
        "joined",
        "recorded_at",
        "land_mu",
        "amount_cny",
        "verified",
        "note",
    ]
    records, broken = _read(path)
    assert records == [
        ["m0001", "2024-03-01", "2024-03-01T08:30:00", "12", "301.2", "true", None],
        ["m0002", "2024-12-31", "2025-01-02T17:00:05", "3", "0.001", "false", "王庄06"],
        ["m0003", None, None, "1234567890123", "0.3", None, None],
    ]
    assert broken == []
    assert not is_empty(path)


def test_xlsx_times_and_durations_read_as_excel_shows_them(tmp_path: Path) -> None:
    rows = [
        ["at", "took"],
        [time(8, 30, 15), timedelta(hours=30, minutes=5)],
        [time(0, 0, 1), timedelta(seconds=1.5)],
    ]
    path = write_xlsx(tmp_path / "times.xlsx", {"Sheet1": rows})
    assert _read(path) == ([["08:30:15", "30:05:00"], ["00:00:01", "0:00:01.5"]], [])


def test_xlsx_named_sheet_numbers_rows_as_excel_does(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "coop.xlsx")
    assert read_header(path, sheet="events") == ["event_id", "coop_id"]
    records, broken = _read(path, sheet="events")
    assert records == [["e1", "c01"]]
    assert broken == [BrokenLine(4, "e2,c02,stray", "malformed line: expected 2 fields, found 3")]


def test_xlsx_missing_sheet_names_the_sheets_there_are(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "coop.xlsx")
    with pytest.raises(FileReadError, match=r"no sheet named 'members' \(sheets: '成员', 'events'\)"):
        list(iter_chunks(path, 100, sheet="members"))


def test_xlsx_in_chunks_and_header_only(tmp_path: Path) -> None:
    rows = [["event_id", "amount_cny"]] + [[f"e{i}", i] for i in range(25)]
    path = write_xlsx(tmp_path / "many.xlsx", {"Sheet1": rows, "blank": []})
    chunks = list(iter_chunks(path, 10))
    assert [c.records.num_rows for c in chunks] == [10, 10, 5]
    assert [c.first_record_index for c in chunks] == [0, 10, 20]
    assert chunks[2].records.to_pylist()[-1] == {"event_id": "e24", "amount_cny": "24"}
    header_only = write_xlsx(tmp_path / "header.xlsx", {"Sheet1": rows[:1]})
    assert read_header(header_only) == ["event_id", "amount_cny"]
    assert list(iter_chunks(header_only, 10)) == [] and is_empty(header_only)
    assert read_header(path, sheet="blank") == [] and list(iter_chunks(path, 10, sheet="blank")) == []
