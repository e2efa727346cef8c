"""The data layer: built-in tasks on the real files, unlabelled text without leakage, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from deftx.data import (
    DATA_DIR_ENV,
    LANGUAGES,
    TASKS,
    canonical_language,
    describe_data,
    get_task,
    language_name,
    load_labelled_file,
    load_task_split,
    load_unlabelled_text,
    resolve_data_dir,
    text_sources,
)
from deftx.data.languages import NUSAX_LANGUAGES
from deftx.errors import DataFormatError, InputNotFoundError, UnknownNameError, UsageError

SENTIMENT = ("negative", "neutral", "positive")
NLI = ("entailment", "neutral", "contradiction")
SPLITS = ("train", "valid", "test")


# ------------------------------------------------------------------------------------------------
# built-in tasks on the reference data root


def test_nusax_has_500_100_400_items_per_language_with_the_same_labels(shared_data):
    for lang in NUSAX_LANGUAGES:
        splits = {split: load_task_split("nusax-senti", lang, split, shared_data) for split in SPLITS}
        assert {split: len(data) for split, data in splits.items()} == {"train": 500, "valid": 100, "test": 400}
        train = splits["train"]
        assert train.label_names == SENTIMENT and train.pairs is None
        assert Counter(train.label_names[i] for i in train.labels) == {"negative": 192, "neutral": 119, "positive": 189}


def test_smsa_defaults_to_the_nusax_filtered_files(shared_data):
    sizes = {split: len(load_task_split("smsa", "ind", split, shared_data)) for split in SPLITS}
    assert sizes == {"train": 9974, "valid": 1237, "test": 482}
    original = load_task_split("smsa", None, "train", shared_data, variant="original")
    assert len(original) == 11000 and original.label_names == SENTIMENT
    assert Counter(original.labels) == {2: 6416, 0: 3436, 1: 1148}  # positive / negative / neutral per the README


def test_americasnli_sizes_and_dev_alias(shared_data):
    dev_sizes = {"aym": 743, "bzd": 743, "cni": 658, "grn": 743, "hch": 743, "nah": 585, "oto": 222, "quy": 743,
                 "shp": 743, "tar": 743}
    for lang, size in dev_sizes.items():
        assert len(load_task_split("americasnli", lang, "dev", shared_data)) == size
    assert len(load_task_split("americasnli", "gn", "dev", shared_data)) == 743  # the data set's own code
    quy = load_task_split("anli", "Quechua", "valid", shared_data)
    assert len(quy) == 743 and quy.label_names == NLI and len(quy.pairs) == 743
    assert len(load_task_split("americasnli", "quy", "test", shared_data)) == 750
    # Three nah test premises are blank in the official data: the items stay, so the count matches the paper.
    assert len(load_task_split("americasnli", "nah", "test", shared_data)) == 738


def test_americasnli_line_with_a_literal_quote_is_read_intact(shared_data):
    data = load_task_split("americasnli", "quy", "dev", shared_data)
    quoted = [i for i, text in enumerate(data.texts) if '"Christmas Carol"' in text]
    assert len(quoted) == 3
    assert data.texts[quoted[0]].endswith("tusunanpaq hinakusqan hinata")
    assert data.pairs[quoted[0]] == "Llapachan pachakunataqa Fabricapi rurarqaku"
    assert data.label_names[data.labels[quoted[0]]] == "contradiction"


def test_english_nli_sizes_and_lower_case_labels(shared_data):
    sick = {split: load_task_split("sick", "eng", split, shared_data) for split in SPLITS}
    assert {split: len(d) for split, d in sick.items()} == {"train": 4500, "valid": 500, "test": 4927}
    assert sick["train"].label_names == NLI and set(sick["train"].labels) == {0, 1, 2}
    assert len(load_task_split("xnli", None, "dev", shared_data)) == 2490
    assert len(load_task_split("xnli-en", "eng", "test", shared_data)) == 5010
    assert "contaminat" in get_task("xnli-en").description


def test_multinli_is_not_local_and_points_to_sick(shared_data):
    with pytest.raises(InputNotFoundError) as info:
        load_task_split("mnli", "eng", "train", shared_data)
    assert "sick" in info.value.hint


def test_americasnli_has_no_train_split(shared_data):
    with pytest.raises(UnknownNameError) as info:
        load_task_split("americasnli", "quy", "train", shared_data)
    assert "sick" in info.value.hint


def test_a_language_outside_the_task_is_refused(shared_data):
    with pytest.raises(UnknownNameError, match="americasnli language 'ace'"):
        load_task_split("americasnli", "ace", "test", shared_data)


def test_data_root_from_the_environment(shared_data, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(shared_data))
    assert resolve_data_dir(None) == shared_data
    assert len(load_task_split("nusax-senti", "ace", "valid")) == 100


# ------------------------------------------------------------------------------------------------
# unlabelled text


def test_quechua_text_comes_from_americasnlp_train_and_extra(shared_data):
    paths = [s.path.relative_to(shared_data).as_posix() for s in text_sources("quy", shared_data)]
    assert paths == ["americasnlp_unlabeled/train/quy.txt", "americasnlp_unlabeled/extra/quy.americasnlp2024_extra.txt"]


def test_no_language_reads_evaluation_sentences(shared_data):
    for lang in LANGUAGES:
        for source in text_sources(lang, shared_data):
            path = source.path.relative_to(shared_data).as_posix()
            assert path not in ("nusax/mt/valid.csv", "nusax/mt/test.csv")
            assert not path.startswith(("americasnli/", "nusax/sentiment/", "english_nli/"))


def test_acehnese_text_is_only_the_mt_train_column(shared_data):
    sources = text_sources("acehnese", shared_data)
    assert [(s.path.relative_to(shared_data).as_posix(), s.column) for s in sources] == [
        ("nusax/mt/train.csv", "acehnese")
    ]
    lines, described = load_unlabelled_text("ace", shared_data)
    assert len(lines) == 500 and len(described) == 1
    assert set(lines) == set(load_task_split("nusax-senti", "ace", "train", shared_data).texts)
    assert not set(lines) & set(load_task_split("nusax-senti", "ace", "test", shared_data).texts)


def test_toba_batak_and_indonesian_sources(shared_data):
    bbc = [s.path.name for s in text_sources("bbc", shared_data)]
    assert bbc == ["train.csv", "btk.nusaparagraph.txt", "btk.nusatranslation.txt"]
    ind = [s.path.relative_to(shared_data).as_posix() for s in text_sources("ind", shared_data)]
    assert ind == ["nusax/mt/train.csv", "smsa/train.nusax_filtered.tsv"]


def test_text_is_stripped_deduplicated_and_subsampled_reproducibly(shared_data):
    lines, _ = load_unlabelled_text("gn", shared_data)
    assert len(lines) == len(set(lines)) < 26032  # the Guaraní corpus repeats lines
    assert all(line == line.strip() and line for line in lines)
    first, _ = load_unlabelled_text("gn", shared_data, max_lines=100, seed=3)
    again, _ = load_unlabelled_text("gn", shared_data, max_lines=100, seed=3)
    other, _ = load_unlabelled_text("gn", shared_data, max_lines=100, seed=4)
    assert first == again != other and len(first) == 100
    order = {line: i for i, line in enumerate(lines)}
    assert [order[line] for line in first] == sorted(order[line] for line in first)


def test_text_files_override_the_registry(tmp_path):
    (tmp_path / "a.txt").write_text("  one \n\ntwo\none\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "three"}\n{"text": "two"}\n', encoding="utf-8")
    lines, described = load_unlabelled_text("quy", files=[tmp_path / "a.txt", tmp_path / "b.jsonl"])
    assert lines == ["one", "two", "three"]
    assert described[0] == f"given file ({tmp_path / 'a.txt'}): 3 lines"


def test_describe_data_lists_tasks_and_text(shared_data):
    entries = describe_data(shared_data)
    ace = next(e for e in entries if e["kind"] == "task" and e["task"] == "nusax-senti" and e["language"] == "ace")
    assert ace["splits"] == {"train": 500, "valid": 100, "test": 400} and not ace["errors"]
    mnli = next(e for e in entries if e["kind"] == "task" and e["task"] == "multinli")
    assert mnli["splits"] == {} and mnli["hub"] == "nyu-mll/multi_nli"
    quy = next(e for e in entries if e["kind"] == "text" and e["language"] == "quy")
    assert [s["lines"] for s in quy["sources"]] == [9642, 6436] and quy["lines"] == 16078


# ------------------------------------------------------------------------------------------------
# names


def test_language_codes_names_and_aliases():
    assert canonical_language("Quechua") == "quy"
    assert canonical_language("grn") == "grn" and canonical_language("GN") == "grn"  # ISO 639-3, "gn" accepted
    assert canonical_language("btk") == "bbc" and canonical_language("toba_batak") == "bbc"
    assert canonical_language("acehnese") == "ace" and canonical_language("Guarani") == "grn"
    assert language_name("quy") == "Quechua"
    assert set(LANGUAGES) >= set(TASKS["nusax-senti"].languages) | set(TASKS["americasnli"].languages)


def test_unknown_languages_suggest_close_ones():
    with pytest.raises(UnknownNameError) as info:
        canonical_language("quecha")
    assert "quechua" in info.value.suggestions
    with pytest.raises(UnknownNameError) as info:
        canonical_language("acx")
    assert "ace" in info.value.suggestions and "did you mean 'ace'" in str(info.value)


def test_task_aliases():
    assert get_task("nusax").name == "nusax-senti"
    assert get_task("ANLI").name == get_task("americas-nli").name == "americasnli"
    assert get_task("mnli").name == "multinli"
    assert TASKS["americasnli"].metric == "accuracy" and TASKS["nusax-senti"].metric == "macro_f1"
    with pytest.raises(UnknownNameError, match="unknown task"):
        get_task("sentiment")


def test_data_root_resolution(tmp_path, monkeypatch):
    assert resolve_data_dir(None) is None
    assert resolve_data_dir(tmp_path) == tmp_path
    with pytest.raises(InputNotFoundError, match="does not exist"):
        resolve_data_dir(tmp_path / "missing")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(InputNotFoundError, match=DATA_DIR_ENV):
        resolve_data_dir(None)


# ------------------------------------------------------------------------------------------------
# files given directly, and bad input


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_labelled_csv_names_ids_and_case(tmp_path):
    path = write(tmp_path / "s.csv", 'id,Text,Label\n1,"good, really",POSITIVE\n2,bad,0\n3,meh,neutral\n')
    data = load_labelled_file(path, "nusax-senti")
    assert data.texts == ["good, really", "bad", "meh"] and data.labels == [2, 0, 1]
    assert data.source == str(path)


def test_labelled_jsonl_pairs_and_headerless_tsv(tmp_path):
    jsonl = write(tmp_path / "n.jsonl", '{"premise": "a", "hypothesis": "b", "label": 2}\n\n'
                                        '{"premise": "c", "hypothesis": "d", "label": "entailment"}\n')
    data = load_labelled_file(jsonl, "sick")
    assert data.texts == ["a", "c"] and data.pairs == ["b", "d"] and data.labels == [2, 0]
    tsv = write(tmp_path / "smsa.tsv", 'kata "kutip"\tpositive\njelek\tnegative\n')
    data = load_labelled_file(tsv, "smsa")
    assert data.texts == ['kata "kutip"', "jelek"] and data.labels == [2, 0]


def test_missing_label_column_is_a_format_error(tmp_path):
    path = write(tmp_path / "s.csv", "id,text\n1,good\n")
    with pytest.raises(DataFormatError, match="no label column"):
        load_labelled_file(path, "nusax-senti")


def test_label_outside_the_set_is_named_with_its_line(tmp_path):
    path = write(tmp_path / "s.csv", "text,label\ngood,positive\ngreat,very positive\n")
    with pytest.raises(DataFormatError) as info:
        load_labelled_file(path, "nusax-senti")
    assert "'very positive'" in str(info.value) and "line 3" in str(info.value)
    assert "\n" not in str(info.value)


def test_out_of_range_label_id_is_refused(tmp_path):
    path = write(tmp_path / "s.jsonl", '{"text": "x", "label": 3}\n')
    with pytest.raises(DataFormatError, match="label 3"):
        load_labelled_file(path, "smsa")


def test_tsv_row_with_a_stray_tab_names_its_line(tmp_path):
    path = write(tmp_path / "n.tsv", "premise\thypothesis\tlabel\na\tb\tneutral\nc\td\te\tneutral\n")
    with pytest.raises(DataFormatError, match="line 3: 4 fields"):
        load_labelled_file(path, "americasnli")


def test_empty_files_are_format_errors(tmp_path):
    with pytest.raises(DataFormatError, match="header but no rows"):
        load_labelled_file(write(tmp_path / "s.csv", "text,label\n"), "nusax-senti")
    with pytest.raises(DataFormatError, match="no text"):
        load_unlabelled_text(files=[write(tmp_path / "empty.txt", "\n  \n")])
    with pytest.raises(DataFormatError, match="no 'text' column"):
        load_unlabelled_text(files=[write(tmp_path / "t.csv", "sentence\nhello\n")])


def test_missing_paths_are_input_errors(tmp_path):
    with pytest.raises(InputNotFoundError, match="not found"):
        load_labelled_file(tmp_path / "nope.csv", "nusax-senti")
    with pytest.raises(InputNotFoundError, match="not found"):
        load_unlabelled_text(files=[tmp_path / "nope.txt"])
    with pytest.raises(InputNotFoundError, match="not found"):
        load_task_split("nusax-senti", "ace", "train", tmp_path)


def test_non_utf8_files_are_format_errors(tmp_path):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\ncaf\u00e9,positive\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="not UTF-8 text.*line 2"):
        load_labelled_file(latin, "nusax-senti")
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataFormatError, match="not UTF-8"):
        load_unlabelled_text(files=[raw])


def test_unknown_file_type_and_misused_options(tmp_path):
    with pytest.raises(DataFormatError, match="unknown table format"):
        load_labelled_file(write(tmp_path / "s.xlsx", "x"), "nusax-senti")
    with pytest.raises(UsageError):
        load_labelled_file(write(tmp_path / "s.csv", "text,label\na,positive\n"), "nusax-senti", pair_column="b")
    with pytest.raises(UsageError):
        load_unlabelled_text("ace", files=[write(tmp_path / "t.txt", "a\n")], max_lines=0)


def test_unlabelled_text_without_a_data_root_names_the_options():
    with pytest.raises(InputNotFoundError) as info:
        load_unlabelled_text("quy")
    assert "--text" in info.value.hint and "--data-dir" in info.value.hint


def test_subset_is_reproducible(tmp_path):
    rows = "".join(f"t{i},{('negative', 'neutral', 'positive')[i % 3]}\n" for i in range(50))
    data = load_labelled_file(write(tmp_path / "s.csv", "text,label\n" + rows), "nusax-senti")
    small = data.subset(10, seed=1)
    assert len(small) == 10 and small.texts == data.subset(10, seed=1).texts
    assert small.texts == sorted(small.texts, key=lambda t: int(t[1:]))
    assert data.subset(50, seed=1) is data


# ------------------------------------------------------------------------------------------------
# the hub path, offline


def test_hub_unreachable_is_an_input_error():
    with pytest.raises(InputNotFoundError) as info:
        load_task_split("nusax-senti", "ace", "test")  # conftest sets HF_DATASETS_OFFLINE=1
    assert "indonlp/NusaX-senti" in str(info.value) and "--data-dir" in info.value.hint
    with pytest.raises(InputNotFoundError, match="only in a local data root"):
        load_task_split("smsa", "ind", "train", variant="nusax-filtered")
    with pytest.raises(InputNotFoundError, match="no hub copy"):
        load_task_split("sick", "eng", "train")


def test_hub_class_labels_are_mapped_by_name():
    datasets = pytest.importorskip("datasets")
    from deftx.data.hub_splits import labelled_from_dataset
    from deftx.data.registry import hub_split

    # IndoNLU orders SmSA's labels positive, neutral, negative; deftx's order is negative, neutral, positive.
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["positive", "neutral", "negative"])})
    table = datasets.Dataset.from_dict({"text": ["bagus", "biasa", "buruk"], "label": [0, 1, 2]}, features=features)
    data = labelled_from_dataset(table, hub_split(get_task("smsa"), "ind", "train"), get_task("smsa"))
    assert [data.label_names[i] for i in data.labels] == ["positive", "neutral", "negative"]
    assert data.source == "hub:indonlp/indonlu (smsa, train)"


def test_importing_the_data_layer_is_light():
    code = "import sys, deftx.data; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
