"""task=token_classification units: schemes, quarantine reasons, tag repair, alignment and windows with the real
MiniLM tokenizer, strict vs lenient entity scoring, the BIO-valid decode, spans with character offsets, CoNLL readers."""

import json

import numpy as np
import pandas as pd
import pytest

from schemas.config import DataConfig, FinetuneConfig
from task_types import get_task_type, quarantine_reasons
from task_types.token_classification import entity_scores, word_metrics
from task_types.token_classification.conll import parse_conll, parse_conllu
from task_types.token_classification.inference import rows_to_words
from task_types.token_classification.tagging import (
    IGNORE,
    IOB2,
    IOBES,
    PLAIN,
    align_labels,
    constrained_decode,
    detect_scheme,
    encode_sentences,
    entity_chunks,
    entity_spans,
    invalid_positions,
    merge_windows,
    repair_tags,
    split_words,
    window_labels,
    window_starts,
)

TYPE = get_task_type("token_classification")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, use_fast=True)


# ---- schemes, validation, repair -------------------------------------------------------------------------
def test_scheme_is_detected_from_the_tags():
    assert detect_scheme([["B-PER", "I-PER", "O"], ["B-LOC"]]) == IOB2
    assert detect_scheme([["S-PER", "O"], ["B-LOC", "E-LOC"]]) == IOBES
    assert detect_scheme([["DET", "NOUN", "VERB"]]) == PLAIN
    assert detect_scheme([["O", "O"]]) == PLAIN  # nothing prefixed: no entities to score
    assert detect_scheme([["B-PER", "NOUN"]]) == PLAIN  # a tag that is not P-TYPE makes the set plain


def test_iob2_repair_turns_a_stray_i_into_b_and_counts_it():
    tags = ["O", "I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC"]
    assert invalid_positions(tags, IOB2) == [1, 4, 6]
    fixed, changed = repair_tags(tags, IOB2)
    assert fixed == ["O", "B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-LOC"] and changed == 3
    assert invalid_positions(fixed, IOB2) == []
    assert repair_tags(["B-PER", "I-PER", "O"], IOB2) == (["B-PER", "I-PER", "O"], 0)


def test_iobes_repair_closes_and_opens_chunks():
    tags = ["I-PER", "I-PER", "O", "B-LOC", "O", "E-ORG"]
    fixed, changed = repair_tags(tags, IOBES)
    assert fixed == ["B-PER", "E-PER", "O", "S-LOC", "O", "S-ORG"] and changed == 4
    assert invalid_positions(fixed, IOBES) == [] and invalid_positions(tags, IOBES) != []


def _validate(rows, **data):
    texts = pd.Series([json.dumps(w) if not isinstance(w, str) else w for w, _ in rows], dtype=object)
    labels = pd.Series([json.dumps(t) if not isinstance(t, str) else t for _, t in rows], dtype=object)
    return TYPE.validate_rows(texts, labels, DataConfig(**data))


def test_every_quarantine_reason():
    rows = [
        (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),  # fine
        ("not a list", ["O"]),
        (["a", "b"], "[1, [2]]"),
        ([], []),
        (["a", "b"], ["O"]),
        (["a", "  "], ["O", "O"]),
        (["a", "b"], ["O", " "]),
        (["Peter", "Blackburn"], ["I-PER", "I-PER"]),
    ]
    words, tags, reason = _validate(rows)
    assert list(reason) == [
        None,
        "malformed_token_list",
        "malformed_token_list",
        "empty_sentence",
        "token_tag_mismatch",
        "empty_token",
        "empty_tag",
        "invalid_tag_sequence",
    ]
    assert json.loads(words[0]) == ["EU", "rejects", "German", "call"] and json.loads(tags[0]) == ["B-ORG", "O", "B-MISC", "O"]
    _, _, reason = _validate(rows[:1] + [(["x"], ["B-PER"])], labels=["B-ORG", "O", "B-MISC", "I-MISC", "I-ORG"])
    assert list(reason) == [None, "label_not_in_labels"]
    assert set(TYPE.reasons) <= set(quarantine_reasons())


def test_tag_repair_fix_keeps_the_sentence_and_the_clean_step_counts_it():
    from tasks.clean import clean_frame

    raw = pd.DataFrame(
        {
            "row_id": [0, 1, 2],
            "text": [json.dumps(["Peter", "Blackburn", "said"]), json.dumps(["in", "New", "York"]), json.dumps(["Zürich", "  café"])],
            "label": [json.dumps(["I-PER", "I-PER", "O"]), json.dumps(["O", "B-LOC", "I-LOC"]), json.dumps(["B-LOC", "O"])],
        }
    )
    kept, quarantine = clean_frame(raw, DataConfig(tag_repair="fix"), "token_classification")
    assert quarantine.empty and json.loads(kept.loc[0, "label"]) == ["B-PER", "I-PER", "O"]
    assert json.loads(kept.loc[2, "text"]) == ["Zürich", "café"]  # words stripped and NFC, JSON kept intact
    assert TYPE.clean_summary(raw, kept) == {"tag_scheme": IOB2, "tags_repaired": 1, "sentences_repaired": 1}
    kept, quarantine = clean_frame(raw, DataConfig(), "token_classification")
    assert list(quarantine["reason"]) == ["invalid_tag_sequence"] and len(kept) == 2


def test_tagged_frame_contract_refuses_misaligned_rows():
    import pandera.errors

    from schemas.data import TaggedFrame

    good = pd.DataFrame({"row_id": [0], "text": [json.dumps(["EU", "rejects"])], "label": [json.dumps(["B-ORG", "O"])]})
    TaggedFrame.validate(good)
    with pytest.raises(pandera.errors.SchemaError):
        TaggedFrame.validate(good.assign(label=json.dumps(["B-ORG"])))


def test_repeated_sentences_are_duplicates_and_conflicts():
    from tasks.clean import clean_frame

    same = json.dumps(["Paris", "again"])
    raw = pd.DataFrame(
        {
            "row_id": [0, 1, 2, 3],
            "text": [same, same, json.dumps(["Rome"]), json.dumps(["Rome"])],
            "label": [json.dumps(["B-LOC", "O"]), json.dumps(["B-LOC", "O"]), json.dumps(["B-LOC"]), json.dumps(["B-PER"])],
        }
    )
    kept, quarantine = clean_frame(raw, DataConfig(), "token_classification")
    assert sorted(quarantine["reason"]) == ["conflicting_labels", "conflicting_labels", "duplicate"] and len(kept) == 1


def test_config_takes_the_new_options_and_refuses_pairs():
    cfg = FinetuneConfig.model_validate(
        {"task": "token_classification", "data": {"format": "conll", "token_column": 0, "tag_column": 3, "tag_repair": "fix"}}
    )
    assert cfg.data.tag_column == 3
    with pytest.raises(ValueError, match="text_pair_column"):
        FinetuneConfig.model_validate({"task": "token_classification", "data": {"text_pair_column": "b"}})
    with pytest.raises(ValueError, match="set task=token_classification"):
        FinetuneConfig.model_validate({"data": {"format": "conll"}})


def test_ingest_reads_list_columns_and_conll_files(tmp_path):
    from tasks.ingest import read_source

    pd.DataFrame({"tokens": [["EU", "rejects", "Zürich"], ["ok"]], "tags": [["B-ORG", "O", "B-LOC"], ["O"]]}).to_parquet(
        tmp_path / "t.parquet"
    )
    raw, _ = read_source(
        DataConfig(path=str(tmp_path / "t.parquet"), text_column="tokens", label_column="tags"), task="token_classification"
    )
    assert json.loads(raw.loc[0, "text"]) == ["EU", "rejects", "Zürich"] and json.loads(raw.loc[0, "label"]) == ["B-ORG", "O", "B-LOC"]
    (tmp_path / "x.conll").write_text("EU B-ORG\nrejects O\n\n-DOCSTART- O\n\nok O\n")
    raw, counts = read_source(DataConfig(path=str(tmp_path / "x.conll")), task="token_classification")
    assert [json.loads(t) for t in raw["text"]] == [["EU", "rejects"], ["ok"]] and counts["rows_out"] == 2


# ---- alignment and windows ----------------------------------------------------------------------------------
def test_align_labels_first_piece_only():
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [3, 1, 2]) == [IGNORE, 3, IGNORE, 1, 2, IGNORE, IGNORE, IGNORE]


def test_alignment_with_the_real_tokenizer_on_words_split_into_many_pieces(tokenizer):
    words = ["Schwarzeneggerification", "in", "Zürich", "antidisestablishmentarianism", "."]
    windows, lengths = encode_sentences(tokenizer, [words], max_length=64)
    assert len(windows) == 1
    (w,) = windows
    pieces = tokenizer(words, is_split_into_words=True)
    assert w.input_ids == pieces["input_ids"] and lengths[0] == len(w.input_ids)
    expected = align_labels(pieces.word_ids(), [10, 11, 12, 13, 14])
    assert window_labels(w, [10, 11, 12, 13, 14]) == expected
    assert sum(1 for v in expected if v != IGNORE) == len(words)  # one label per word, however many pieces
    assert len(w.input_ids) > len(words) + 4  # the long words really were split


def test_windows_cover_every_word_once_and_merge_back(tokenizer):
    words = ["Schwarzeneggerification", "met", "antidisestablishmentarianism"] * 6 + ["end"]
    windows, lengths = encode_sentences(tokenizer, [words, ["short", "one"]], max_length=12)
    assert lengths[0] > 12 and all(len(w.input_ids) <= 12 for w in windows)
    first = [w for w in windows if w.row == 0]
    assert len(first) > 2
    owned = sorted(m for w in first for m in w.word_ids if m >= 0)
    assert owned == list(range(len(words)))  # every word owned by exactly one window
    values = [np.array([m if m >= 0 else -7 for m in w.word_ids]) for w in windows]
    merged = merge_windows([w.row for w in windows], [w.word_ids for w in windows], values, [len(words), 2])
    assert merged[0].tolist() == list(range(len(words))) and merged[1].tolist() == [0, 1]
    assert window_starts(10, 4, 1) == [0, 3, 6] and window_starts(3, 4, 1) == [0]


def test_a_word_with_no_piece_is_read_as_unknown(tokenizer):
    windows, _ = encode_sentences(tokenizer, [["a", "\u200b", "b"]], max_length=16)
    assert sorted(m for m in windows[0].word_ids if m >= 0) == [0, 1, 2]
    assert tokenizer.unk_token_id in windows[0].input_ids


def test_tokenize_hook_gives_windows_and_counts_them(tokenizer):
    frame = pd.DataFrame(
        {
            "row_id": [5, 9],
            "text": [json.dumps(["word"] * 40), json.dumps(["EU", "rejects"])],
            "label": [json.dumps(["O"] * 40), json.dumps(["B-ORG", "O"])],
        }
    )
    spec = {"labels": ["B-ORG", "O"], "scheme": IOB2}
    columns, lengths, stats = TYPE.tokenize(tokenizer, frame, spec, max_length=16)
    assert stats["windowed"] == 1 and stats["truncated"] == 0 and stats["windows"] == len(columns["input_ids"]) > 2
    assert columns["row_id"][-1] == 9 and columns["labels"][-1] == [IGNORE, 0, 1, IGNORE]
    assert sum(sum(1 for v in labels if v != IGNORE) for labels, r in zip(columns["labels"], columns["row_id"]) if r == 5) == 40


# ---- metrics and decoding ------------------------------------------------------------------------------------------
def test_seqeval_strict_and_lenient_differ_on_a_stray_i():
    truth, pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert entity_scores(truth, pred, IOB2, strict=False)["entity_f1"] == 1.0  # conlleval counts I- I- as the entity
    assert entity_scores(truth, pred, IOB2, strict=True)["entity_f1"] == 0.0  # strict: an entity starts with B-


def test_word_metrics_by_hand():
    labels = ["B-LOC", "B-PER", "I-PER", "O"]
    truth = [np.array([1, 2, 3, 0]), np.array([3, 0])]
    pred = [np.array([1, 2, 3, 3]), np.array([3, 0])]
    m = word_metrics(truth, pred, labels, IOB2)
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    assert m["entity_precision"] == 1.0 and m["entity_recall"] == pytest.approx(2 / 3) and m["entity_f1"] == pytest.approx(0.8)
    assert m["per_class"]["LOC"]["recall"] == 0.5 and m["per_class"]["PER"]["f1"] == 1.0
    plain = word_metrics([np.array([0, 1, 1])], [np.array([0, 1, 0])], ["NOUN", "VERB"], PLAIN)
    assert "entity_f1" not in plain and plain["confusion_matrix"] == [[1, 0], [1, 1]]
    assert plain["token_f1_macro"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_constrained_decode_never_outputs_an_invalid_sequence():
    labels = ["B-PER", "I-PER", "O"]
    proba = np.array([[0.1, 0.3, 0.6], [0.3, 0.6, 0.1]])  # argmax O, I-PER: invalid
    assert [labels[i] for i in proba.argmax(axis=1)] == ["O", "I-PER"]
    assert [labels[i] for i in constrained_decode(proba, labels, IOB2)] == ["O", "B-PER"]
    rng = np.random.default_rng(0)
    many = ["B-LOC", "B-PER", "E-LOC", "E-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    for scheme, tags in ((IOB2, labels + ["B-LOC", "I-LOC"]), (IOBES, many)):
        for _ in range(200):
            p = rng.dirichlet(np.ones(len(tags)) * 0.3, size=int(rng.integers(1, 9)))
            decoded = [tags[i] for i in constrained_decode(p, tags, scheme)]
            assert invalid_positions(decoded, scheme) == [], decoded


def test_predict_columns_decode_validly_and_give_spans():
    spec = {"labels": ["B-LOC", "I-LOC", "O"], "scheme": IOB2}
    row = rows_to_words(["New York, New York!"])[0]
    proba = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]])
    columns = TYPE.predict_columns([{**row, "proba": proba}], spec, {})
    assert json.loads(columns["words"][0]) == ["New", "York", ",", "New", "York", "!"]
    assert json.loads(columns["tags"][0]) == ["B-LOC", "I-LOC", "O", "B-LOC", "I-LOC", "O"]
    spans = json.loads(columns["entities"][0])
    assert [(s["text"], s["start"], s["end"]) for s in spans] == [("New York", 0, 8), ("New York", 10, 18)]
    assert all(0 < s["score"] <= 1 for s in spans)


# ---- raw text, spans, readers ---------------------------------------------------------------------------------------
def test_spans_have_character_offsets_on_repeated_words_and_unicode():
    text = "Zürich 😀 loves Zürich, and @Zoë loves #Zürich…"
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Zürich", "😀", "loves", "Zürich", ",", "and", "@Zoë", "loves", "#Zürich", "…"]
    assert all(text[s:e] == w for w, s, e in words)
    tags = ["B-LOC", "O", "O", "B-LOC", "O", "O", "B-PER", "O", "B-LOC", "O"]
    spans = entity_spans(text, [s for _, s, _ in words], [e for _, _, e in words], tags, [0.9] * 10, IOB2)
    assert [(s["type"], s["text"], s["start"]) for s in spans] == [
        ("LOC", "Zürich", 0),
        ("LOC", "Zürich", 15),
        ("PER", "@Zoë", 27),
        ("LOC", "#Zürich", 38),
    ]  # code points, not bytes
    assert all(text[s["start"] : s["end"]] == s["text"] for s in spans)
    pre = rows_to_words([["New", "York", "café"]])[0]
    assert pre["text"] == "New York café" and pre["starts"] == [0, 4, 9] and pre["ends"] == [3, 8, 13]
    assert entity_chunks(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], IOBES) == [("PER", 0, 1), ("LOC", 1, 4)]


def test_conll_reader_tab_only_separators_docstart_and_spaces():
    lines = ["-DOCSTART- -X- O O", "", "EU\tB-ORG", "rejects\tO", "\t", "Peter NNP B-PER", "Blackburn NNP I-PER", "   ", "", "lone"]
    frame = parse_conll(lines)
    assert [json.loads(t) for t in frame["text"]] == [["EU", "rejects"], ["Peter", "Blackburn"], ["lone"]]
    assert [json.loads(t) for t in frame["label"]] == [["B-ORG", "O"], ["B-PER", "I-PER"], []]  # the last: a token/tag mismatch
    assert [json.loads(t) for t in parse_conll(lines[5:7], tag_column=1)["label"]] == [["NNP", "NNP"]]


def test_conllu_reader_form_and_upos_or_xpos():
    lines = [
        "# sent_id = 1",
        "1-2\tdu\t_\t_\t_",
        "1\tde\tde\tADP\tIN",
        "2\tle\tle\tDET\tDT",
        "2.1\tx\tx\tX\tX",
        "3\tmonde\tmonde\tNOUN\tNN",
        "",
    ]
    frame = parse_conllu(lines)
    assert json.loads(frame.loc[0, "text"]) == ["de", "le", "monde"] and json.loads(frame.loc[0, "label"]) == ["ADP", "DET", "NOUN"]
    assert json.loads(parse_conllu(lines, tag_column=4).loc[0, "label"]) == ["IN", "DT", "NN"]


def test_plain_tags_use_token_gates_and_compare_on():
    from schemas.config import RegistryConfig

    plain = TYPE.for_target({"scheme": PLAIN})
    assert plain.compare_on == "token_f1_macro" and [g.metric for g in plain.gates(RegistryConfig())] == [
        "token_accuracy",
        "token_f1_macro",
    ]
    bio = TYPE.for_target({"scheme": IOB2})
    assert bio.compare_on == "entity_f1" and [g.metric for g in bio.gates(RegistryConfig())] == ["entity_f1", "token_accuracy"]
    assert TYPE.empty_columns({"scheme": PLAIN}) == ["words", "tags"]
