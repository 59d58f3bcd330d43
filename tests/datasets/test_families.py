"""The language-families table: covers every language Whisper can output, and its families
and branches are Glottolog's."""

from __future__ import annotations

import pytest

from talkbench.datasets import families as fam

# Glottolog top-level families (and "isolate") that the languages Whisper knows belong to.
GLOTTOLOG_FAMILIES = {
    "Indo-European", "Sino-Tibetan", "Afro-Asiatic", "Atlantic-Congo", "Austronesian", "Austroasiatic",
    "Tai-Kadai", "Dravidian", "Turkic", "Uralic", "Mongolic-Khitan", "Kartvelian", "Koreanic", "Japonic", "isolate",
}


def test_covers_every_faster_whisper_language():
    tokenizer = pytest.importorskip("faster_whisper.tokenizer")
    codes = set(tokenizer._LANGUAGE_CODES)
    assert len(codes) == 100
    assert codes == set(fam.families())


def test_covers_every_openai_whisper_language():
    tokenizer = pytest.importorskip("whisper.tokenizer")
    assert set(tokenizer.LANGUAGES) == set(fam.families())
    # the English names agree with Whisper's, apart from a few fuller ones
    renamed = {"my": "myanmar", "ht": "haitian creole", "nn": "nynorsk", "fa": "persian", "zh": "chinese"}
    for code, name in tokenizer.LANGUAGES.items():
        ours = fam.families()[code].name.lower()
        assert ours == name or renamed.get(code) == name, (code, ours, name)


@pytest.mark.parametrize(
    "code, family, branch",
    [
        ("sw", "Atlantic-Congo", "Bantu"),
        ("tr", "Turkic", "Oghuz"),
        ("hu", "Uralic", "Hungarian"),
        ("fi", "Uralic", "Finnic"),
        ("fa", "Indo-European", "Iranian"),
        ("eu", "isolate", "Basque"),
        ("ko", "Koreanic", "Korean"),
        ("ja", "Japonic", "Japanesic"),
        ("zh", "Sino-Tibetan", "Sinitic"),
        ("yue", "Sino-Tibetan", "Sinitic"),
        ("ar", "Afro-Asiatic", "Semitic"),
        ("ha", "Afro-Asiatic", "Chadic"),
        ("en", "Indo-European", "Germanic"),
        ("fr", "Indo-European", "Romance"),
        ("ru", "Indo-European", "Slavic"),
        ("hi", "Indo-European", "Indo-Aryan"),
        ("ta", "Dravidian", "South Dravidian"),
        ("vi", "Austroasiatic", "Vietic"),
        ("th", "Tai-Kadai", "Tai"),
        ("id", "Austronesian", "Malayic"),
        ("ka", "Kartvelian", "Karto-Zan"),
        ("mn", "Mongolic-Khitan", "Mongolic"),
    ],
)
def test_spot_checks(code, family, branch):
    lang = fam.lookup(code)
    assert (lang.family, lang.branch) == (family, branch)
    assert fam.is_indo_european(code) == (family == "Indo-European")


def test_mnte_languages_are_all_outside_indo_european():
    # the paper's non-Indo-European evaluation corpus
    assert not any(fam.is_indo_european(c) for c in ("ar", "sw", "zh", "ko", "ja", "tr"))


def test_every_family_is_a_glottolog_family_and_rows_are_complete():
    table = fam.families()
    assert {lang.family for lang in table.values()} <= GLOTTOLOG_FAMILIES
    assert all(lang.name and lang.branch for lang in table.values())
    assert sum(lang.indo_european for lang in table.values()) == 55


def test_source_is_named_with_its_version():
    assert "Glottolog 5.1" in fam.source() and "glottolog.org" in fam.source()


def test_codes_are_normalised():
    assert fam.normalise("jv") == "jw"  # ISO 639-1 Javanese -> Whisper's code
    assert fam.normalise("zh-CN") == "zh"
    assert fam.normalise(" PT_br ") == "pt"
    assert fam.normalise("") is None and fam.normalise(None) is None
    assert fam.lookup("xx") is None and fam.family_of("xx") == fam.UNKNOWN and fam.name_of("xx") == "xx"
