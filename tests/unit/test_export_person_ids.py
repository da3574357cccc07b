"""An attendance export that carries a person id besides the personnummer (the system's own
pupil number, a row id) lands without it: a layout keeps only the fields of the lesson
contract, the personal id as its keyed hash, and drops what it lists under `ignore` while
reading. Landed files and the quarantine hold neither raw value."""

from __future__ import annotations

from datetime import date

import polars as pl
import yaml

from connectors.attendance_export.layouts import load_layouts
from connectors.personal_ids import luhn_check_digit
from flows.attendance import rules
from flows.attendance.exports import land_new_exports
from flows.layers.landing import landed_loads
from lagesbild.settings import PROJECT_ROOT, Settings

KEY = "export-person-ids-test-key"
PUPIL = "150304-123" + str(luhn_check_digit("150304123"))
PUPIL_NUMBER = "SK24-0071834"  # the attendance system's own id of the pupil
ROW_IDS = ["R-5530001", "R-5530002"]
HEADER = "Personnummer;ElevID;RadID;Elev;Skolenhetskod;Skola;Årskurs;Klass;Datum;Starttid;"
HEADER += "Lektionslängd (min);Frånvaro (min);Frånvarotyp"


def _export(tmp_path, monkeypatch):
    shipped = yaml.safe_load(
        (PROJECT_ROOT / "connectors/attendance_export/layouts.yml").read_text()
    )
    layout = shipped["skola24_csv"]
    layout["ignore"] = [*layout["ignore"], "ElevID", "RadID"]
    layouts = tmp_path / "layouts.yml"
    layouts.write_text(yaml.safe_dump({"skola24_csv": layout}, allow_unicode=True))
    drop = tmp_path / "drop"
    (drop / "attendance" / "skola24").mkdir(parents=True)
    rows = [  # the second lesson's grade is not one: quarantined with its original values
        f"{PUPIL};{PUPIL_NUMBER};{ROW_IDS[0]};Åsa Öberg;12345678;Ängsskolan;4;4A;2025-09-01;"
        "08:10;45;0;",
        f"{PUPIL};{PUPIL_NUMBER};{ROW_IDS[1]};Åsa Öberg;12345678;Ängsskolan;fyra;4A;2025-09-01;"
        "09:10;45;45;Giltig frånvaro",
    ]
    path = drop / "attendance" / "skola24" / "franvaro_2025-09.csv"
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("cp1252"))
    for name, value in {
        "DATA_DIR": tmp_path / "data",
        "DROP_DIR": drop,
        "ATTENDANCE_LAYOUTS": layouts,
        "MIN_FILE_AGE_SECONDS": 0,
        "PSEUDONYM_KEY": KEY,
    }.items():
        monkeypatch.setenv(f"LAGESBILD_{name}", str(value))
    return Settings(), load_layouts(layouts)["skola24_csv"]


def _raw_values_in(text: str) -> set[str]:
    raws = {PUPIL, PUPIL.replace("-", ""), PUPIL_NUMBER, *ROW_IDS, "Åsa Öberg"}
    return {raw for raw in raws if raw in text}


def test_an_export_s_own_pupil_and_row_ids_are_not_landed_or_quarantined(tmp_path, monkeypatch):
    settings, layout = _export(tmp_path, monkeypatch)
    export = next(settings.paths.drop.rglob("*.csv")).read_bytes().decode("cp1252")
    assert len(_raw_values_in(export)) == 5  # the search finds them where they are
    (manifest,) = land_new_exports(settings, KEY.encode())
    assert manifest.rows == 2
    (load,) = landed_loads(settings.paths.landing, "attendance_export")
    landed = load.read()
    assert "ElevID" not in landed.columns and "RadID" not in landed.columns
    assert set(landed["pupil_id_kind"]) == {"personnummer"}
    for path in settings.paths.data.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1") + path.read_bytes().decode(
                "utf-8", errors="replace"
            )
            if path.suffix == ".parquet":
                text += pl.read_parquet(path).write_ndjson()
            assert not _raw_values_in(text), path
    # what the clean layer writes: the clean rows and the quarantine (original values)
    split = rules.split_load(load.scan(), layout, {"12345678"}, load.load_id, date(2025, 10, 1))
    assert (split.clean, split.quarantined) == (1, 1)
    assert split.quarantine["reason"].to_list() == ["invalid_grade"]
    for frame in (split.rows, split.quarantine):
        assert not _raw_values_in(frame.write_ndjson())
