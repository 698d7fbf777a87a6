"""Feature views cannot reach protected attributes (gender, birth year, returning youth,
left-behind woman, county): not in any declaration, not in the generated SQL, not among the
relations the engine registers, and changing or removing member profiles changes no feature."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalog import Feature, FeatureRegistry, default_registry
from features.contracts import MEMBER_PROFILE_CONTRACT, PROTECTED_ATTRIBUTES
from features.offline import (
    DuckDBEngine,
    EngineConfig,
    application_spine,
    build_features,
    compile_feature_sql,
)
from tests.utils.feature_fixtures import World, seeded_world, write_table

FORBIDDEN = {*PROTECTED_ATTRIBUTES, "member_profiles", "cooperatives", "county"}
ENGINE = DuckDBEngine(EngineConfig(threads=1, memory_limit="1GB"))


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)}


def test_no_declaration_names_a_protected_attribute() -> None:
    for feature in default_registry().features:
        named = {
            *feature.sources,
            *feature.inputs,
            *(c.column for c in feature.where),
            feature.column or "",
        }
        assert not named & FORBIDDEN, feature.name
        assert not _words(feature.name) & FORBIDDEN


def test_declaring_a_feature_on_a_protected_attribute_is_rejected() -> None:
    registry = default_registry()
    template = registry.features[0].model_dump()
    for column in PROTECTED_ATTRIBUTES:
        rogue = Feature(**{**template, "name": "rogue", "column": column})
        with pytest.raises(ValueError, match="protected"):
            FeatureRegistry(features=(*registry.features, rogue), reason_groups=registry.reason_groups)
    rogue = Feature(**{**template, "name": "rogue", "sources": ("member_profiles",)})
    with pytest.raises(ValueError, match="protected"):
        FeatureRegistry(features=(*registry.features, rogue), reason_groups=registry.reason_groups)


@pytest.mark.parametrize("dedupe", [(), ("produce_delivery", "membership")])
def test_generated_sql_never_mentions_protected_data(dedupe: tuple[str, ...]) -> None:
    sql = compile_feature_sql(default_registry(), deduplicate=dedupe)
    assert not _words(sql) & FORBIDDEN


def test_engine_registers_no_relation_over_member_profiles(tmp_path: Path) -> None:
    world = seeded_world(seed=1, members=5, events=50, applications=5)
    events_dir, tables_dir = world.write(tmp_path)
    assert (tables_dir / "member_profiles").exists()
    con = ENGINE.connect()
    ENGINE.register_sources(con, events_dir=events_dir, tables_dir=tables_dir)
    views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    tables = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    con.close()
    assert views, "the engine registers its sources as views"
    for name, sql in views:
        assert not _words(f"{name} {sql}") & FORBIDDEN, name
    assert not tables


def _build(world: World, root: Path) -> pd.DataFrame:
    events_dir, tables_dir = world.write(root)
    spine = application_spine(world.application_frame())
    return build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)


def test_changing_or_removing_profiles_changes_no_feature(tmp_path: Path) -> None:
    world = seeded_world(seed=2, members=12, events=300, applications=20)
    baseline = _build(world, tmp_path / "with_profiles")

    flipped = [
        {
            **p,
            "gender": "male" if p["gender"] == "female" else "female",
            "birth_year": 2000 - (p["birth_year"] - 1960),
            "returning_youth": not p["returning_youth"],
            "left_behind_woman": not p["left_behind_woman"],
            "county_id": "elsewhere",
        }
        for p in world.profiles
    ]
    root = tmp_path / "flipped"
    events_dir, tables_dir = world.write(root)
    shutil.rmtree(tables_dir / "member_profiles")
    write_table(tables_dir, "member_profiles", flipped)
    spine = application_spine(world.application_frame())
    changed = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
    pd.testing.assert_frame_equal(changed, baseline)

    # Unreadable profiles cannot matter either: the builder never opens them.
    (tables_dir / "member_profiles" / "part-00000.parquet").write_bytes(b"not parquet")
    garbled = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
    pd.testing.assert_frame_equal(garbled, baseline)

    shutil.rmtree(tables_dir / "member_profiles")
    removed = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
    pd.testing.assert_frame_equal(removed, baseline)
    assert MEMBER_PROFILE_CONTRACT.name == "member_profiles"
    assert np.isfinite(baseline["event_count_365d"]).all()
