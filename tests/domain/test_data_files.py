"""The packaged YAML files fail at start-up with an error that names the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.catalog import CatalogError, load_catalog
from app.domain.data_files import read_yaml, read_yaml_mapping
from app.domain.isi import InstrumentError, load_instrument
from app.patient_context.vocabulary import VocabularyError, load_vocabulary


def test_a_missing_file_names_itself_and_what_it_is(tmp_path: Path) -> None:
    missing = tmp_path / "gone.yaml"
    with pytest.raises(InstrumentError, match=rf"{missing}: cannot read instrument"):
        load_instrument(missing)
    with pytest.raises(VocabularyError, match=rf"{missing}: cannot read vocabulary"):
        load_vocabulary(missing)
    with pytest.raises(CatalogError, match=rf"{missing}: cannot read catalog"):
        load_catalog(missing)


def test_broken_yaml_is_refused_with_the_callers_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read thing") as caught:
        read_yaml(broken, ValueError, "thing")
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize("text", ["- a list\n", "just text\n", ""])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    source = tmp_path / "file.yaml"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(InstrumentError, match="expected a mapping at the top level"):
        load_instrument(source)
    with pytest.raises(CatalogError, match="expected a mapping at the top level"):
        read_yaml_mapping(source, CatalogError, "catalog")


def test_a_vocabulary_without_systems_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "vocabulary.yaml"
    source.write_text("egfr: {}\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="expected a mapping with 'systems'"):
        load_vocabulary(source)
