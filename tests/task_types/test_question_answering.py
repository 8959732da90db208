"""task=question_answering units: answers checked and repaired against their context, windows that keep every answer,
the post-processing on hand-made logits, the null threshold, the official SQuAD metric, the reader and the baseline."""

import json

import numpy as np
import pandas as pd
import pytest

from schemas.config import DataConfig, FinetuneConfig
from task_types import get_task_type
from task_types.question_answering.overlap import idf_table, overlap_answer
from task_types.question_answering.squad import answers_of, check_answers, normalize_answer, read_squad, squad_scores, token_f1
from task_types.question_answering.windows import (
    NO_OFFSET,
    answer_lost,
    answer_positions,
    apply_null_threshold,
    best_spans,
    encode_windows,
    tune_null_threshold,
)
from tasks.clean import clean_frame

QA = get_task_type("question_answering")
CONTEXT = "The Eiffel Tower is in Paris. It was built in 1889 by Gustave Eiffel's company."


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, use_fast=True)


def _answers(text, start):
    return json.dumps({"text": [text], "answer_start": [start]})


# ---- validation and repair ---------------------------------------------------------------------------------
def test_answers_that_slice_their_context_pass_and_others_are_repaired_or_quarantined():
    ok, why, repaired = check_answers(_answers("Paris", CONTEXT.index("Paris")), CONTEXT)
    assert why is None and repaired == 0 and CONTEXT[ok["answer_start"][0] :].startswith("Paris")
    fixed, why, repaired = check_answers(_answers("1889", 3), CONTEXT)  # wrong start, text found once: repaired
    assert why is None and repaired == 1 and fixed["answer_start"] == [CONTEXT.index("1889")]
    found, why, repaired = check_answers(_answers("Paris", None), CONTEXT)  # no start: searched, not counted as a repair
    assert why is None and repaired == 0 and found["answer_start"] == [CONTEXT.index("Paris")]
    assert check_answers(_answers("Eiffel", 99), CONTEXT)[1] == "ambiguous_answer_start"  # twice in the context
    assert check_answers(_answers("London", 0), CONTEXT)[1] == "answer_not_in_context"
    assert check_answers(_answers(CONTEXT + " and more", 0), CONTEXT)[1] == "answer_not_in_context"  # longer than the context
    assert check_answers(json.dumps({"malformed": "x"}), CONTEXT)[1] == "malformed_answers"
    assert check_answers(_answers("", 0), CONTEXT)[1] == "malformed_answers"
    unanswerable, why, _ = check_answers(json.dumps({"text": [], "answer_start": []}), CONTEXT)
    assert why is None and unanswerable == {"text": [], "answer_start": []}


def test_answer_cells_in_every_shape_become_one_target():
    expected = {"text": ["Paris"], "answer_start": [23]}
    assert json.loads(answers_of({"text": ["Paris"], "answer_start": [23]})) == expected  # Hugging Face's shape
    assert json.loads(answers_of([{"text": "Paris", "answer_start": 23}])) == expected  # a list of answers
    assert json.loads(answers_of(json.dumps(expected))) == expected  # its JSON text (CSV)
    assert json.loads(answers_of("Paris")) == {"text": ["Paris"], "answer_start": [None]}  # one answer's text
    assert answers_of(None) is None and "malformed" in json.loads(answers_of("{broken"))


def test_clean_quarantines_bad_answers_merges_repeated_questions_and_counts_every_row():
    rows = [
        ("Where is it?", CONTEXT, _answers("Paris", CONTEXT.index("Paris"))),
        ("When was it built?", CONTEXT, _answers("1889", 0)),  # repaired
        ("Who built it?", CONTEXT, _answers("Napoleon", 0)),  # answer_not_in_context
        ("Which name?", CONTEXT, _answers("Eiffel", 1)),  # ambiguous_answer_start
        ("Where is it?", CONTEXT, _answers("in Paris", CONTEXT.index("in Paris"))),  # same question: merged
        ("Where is it?", CONTEXT, _answers("Paris", CONTEXT.index("Paris"))),  # nothing new: a duplicate
        ("", CONTEXT, _answers("Paris", 23)),  # empty question
        ("What?", None, _answers("Paris", 23)),  # no context
    ]
    raw = pd.DataFrame(
        {"row_id": range(len(rows)), "text": [r[0] for r in rows], "text_pair": [r[1] for r in rows], "label": [r[2] for r in rows]}
    )
    kept, quarantine = clean_frame(raw, DataConfig(), "question_answering")
    assert len(kept) + len(quarantine) == len(raw)
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {
        2: "answer_not_in_context",
        3: "ambiguous_answer_start",
        4: "answer_merged",
        5: "duplicate",
        6: "empty_text",
        7: "null_text_pair",
    }
    first = json.loads(kept.loc[kept["row_id"] == 0, "label"].iloc[0])
    assert first["text"] == ["Paris", "in Paris"]  # several gold answers kept for evaluation
    assert kept.loc[kept["row_id"] == 0, "text_pair"].iloc[0] == CONTEXT  # the context exactly as given
    assert QA.clean_summary(raw.assign(label=raw["label"].astype(object)), kept) == {"answers_repaired": 1, "unanswerable": 0}


def test_config_takes_the_options_and_refuses_what_does_not_fit():
    cfg = FinetuneConfig.model_validate({"task": "question_answering", "train": {"doc_stride": 64}, "eval": {"max_answer_length": 20}})
    assert cfg.train.doc_stride == 64 and cfg.eval.max_answer_length == 20
    with pytest.raises(ValueError, match="train.doc_stride is for task=question_answering"):
        FinetuneConfig.model_validate({"train": {"doc_stride": 64}})
    with pytest.raises(ValueError, match="data.question_column"):
        FinetuneConfig.model_validate({"task": "question_answering", "data": {"text_pair_column": "c"}})


# ---- grouping ------------------------------------------------------------------------------------------------
def test_every_question_of_a_context_falls_in_one_split():
    from tasks.split import split_frame

    contexts = [f"context {i // 5}" for i in range(200)]  # 40 contexts, 5 questions each
    frame = pd.DataFrame({"row_id": range(200), "text": [f"q{i}" for i in range(200)], "text_pair": contexts, "label": ["{}"] * 200})
    parts = split_frame(frame, 0.1, 0.1, seed=3, keys=pd.Series(["answerable"] * 200), groups=frame["text_pair"])
    owners = {}
    for name, part in parts.items():
        for context in part["text_pair"]:
            owners.setdefault(context, set()).add(name)
    assert all(len(names) == 1 for names in owners.values()) and sum(len(p) for p in parts.values()) == 200
    assert all(len(part) > 0 for part in parts.values())


# ---- windows -----------------------------------------------------------------------------------------------------
def test_windows_with_stride_keep_an_answer_at_the_end_of_a_long_context(tokenizer):
    filler = " ".join(f"word{i}" for i in range(150))
    context = f"{filler} The answer is Zanzibar."
    answers = [{"text": ["Zanzibar"], "answer_start": [context.index("Zanzibar")]}]
    windows = encode_windows(tokenizer, ["Where is it?"], [context], max_length=64, stride=16, answers=answers)
    assert len(windows.example) > 3 and set(windows.example) == {0}  # one question, many windows
    held = [i for i, s in enumerate(windows.columns["start_positions"]) if s != 0]
    assert held and held[-1] == len(windows.example) - 1  # the last window holds it
    i = held[-1]
    start, end = windows.columns["start_positions"][i], windows.columns["end_positions"][i]
    offsets = windows.offsets[i]
    assert context[offsets[start][0] : offsets[end][1]] == "Zanzibar"
    assert all(len(ids) <= 64 for ids in windows.columns["input_ids"]) and answer_lost(windows, answers) == 0
    assert all(windows.offsets[i][0] == NO_OFFSET for i in range(len(windows.example)))  # [CLS] is outside the context


def test_a_window_without_the_whole_answer_points_at_the_null_position():
    offsets = [NO_OFFSET, (0, 3), (4, 8), (9, 12), NO_OFFSET]
    assert answer_positions(offsets, {"text": ["def"], "answer_start": [4]}) == (2, 2)
    assert answer_positions(offsets, {"text": ["abc def gh"], "answer_start": [0]}) == (1, 3)
    assert answer_positions(offsets, {"text": ["beyond"], "answer_start": [10]}) == (0, 0)  # runs past the window
    assert answer_positions(offsets, {"text": [], "answer_start": []}) == (0, 0)  # unanswerable


# ---- post-processing ---------------------------------------------------------------------------------------------
def test_the_best_span_is_found_across_windows_and_invalid_spans_are_refused():
    contexts = ["alpha beta gamma delta"]
    # two windows of one context: window 1 holds "gamma" with the higher score
    offsets = [[NO_OFFSET, (0, 5), (6, 10), NO_OFFSET], [NO_OFFSET, (6, 10), (11, 16), (17, 22)]]
    start = [np.array([0.0, 2.0, 1.0, 9.0]), np.array([0.0, 0.0, 5.0, 1.0])]  # 9.0 is on a non-context token: refused
    end = [np.array([0.0, 1.0, 2.0, 9.0]), np.array([0.0, 0.0, 5.0, 1.0])]
    (answer,) = best_spans(start, end, offsets, [0, 0], contexts, max_answer_length=30)
    assert (answer["text"], answer["start"], answer["end"]) == ("gamma", 11, 16)
    assert contexts[0][answer["start"] : answer["end"]] == answer["text"]
    # an end before its start is refused; spans over max_answer_length tokens too
    (short,) = best_spans([np.array([0.0, 9.0, 0.0, 0.0])], [np.array([0.0, 0.0, 0.0, 9.0])], [offsets[1]], [0], contexts, 2)
    assert short["end"] - short["start"] <= len("gamma delta") and (short["start"], short["end"]) != (6, 22)
    (reverse,) = best_spans([np.array([0.0, 0.0, 9.0, 0.0])], [np.array([0.0, 9.0, 0.0, 0.0])], [offsets[1]], [0], contexts, 30)
    assert reverse["start"] <= reverse["end"] and (reverse["start"], reverse["end"]) != (11, 10)
    (top,) = best_spans(start, end, offsets, [0, 0], contexts, 30, top_k=3)
    assert len(top["candidates"]) == 3 and top["candidates"][0]["text"] == "gamma"


def test_the_null_answer_wins_past_a_threshold_tuned_on_validation():
    answers = [
        {"text": "Paris", "start": 0, "end": 5, "score": 0.9, "logit": 5.0, "null_logit": 1.0},
        {"text": "Rome", "start": 0, "end": 4, "score": 0.2, "logit": 1.0, "null_logit": 4.0},
    ]
    assert [a["text"] for a in apply_null_threshold(answers, 0.0)] == ["Paris", ""]
    assert [a["text"] for a in apply_null_threshold(answers, None)] == ["Paris", "Rome"]
    margins = np.array([a["null_logit"] - a["logit"] for a in answers])  # -4, 3
    threshold, f1 = tune_null_threshold(margins, np.array([1.0, 0.0]), np.array([0.0, 1.0]))  # 2nd is unanswerable
    assert -4 < threshold < 3 and f1 == 1.0


# ---- the metric ------------------------------------------------------------------------------------------------------
def test_the_metric_matches_the_official_squad_script():
    # values worked by hand with the official v1.1 evaluate-v1.1.py rules
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and the fig") == "apple pear and fig"
    assert token_f1("the cat sat", "cat sat on") == pytest.approx(0.8)
    assert token_f1("Paris", "paris.") == 1.0 and token_f1("x", "y") == 0.0
    scores = squad_scores(["Paris", "in 1889", "Gustave"], [["Paris"], ["1889", "in 1889"], ["Gustave Eiffel's company"]])
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 1 + 2 * 1 * (1 / 3) / (1 + 1 / 3)) / 3)
    v2 = squad_scores(["Paris", "", "Rome"], [["Paris"], [], []])
    assert v2["exact_match"] == pytest.approx(2 / 3) and v2["has_answer_f1"] == 1.0 and v2["no_answer_f1"] == 0.5
    assert v2["no_answer_accuracy"] == pytest.approx(2 / 3)


# ---- reader and baseline ------------------------------------------------------------------------------------------------
def test_the_squad_reader_flattens_v1_and_v2(tmp_path):
    document = {
        "version": "2.0",
        "data": [
            {
                "title": "Tower",
                "paragraphs": [
                    {
                        "context": CONTEXT,
                        "qas": [
                            {"id": "a", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 23}]},
                            {"id": "b", "question": "Who?", "answers": [], "is_impossible": True, "plausible_answers": [{"text": "x"}]},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "train-v2.0.json"
    path.write_text(json.dumps(document))
    frame = read_squad(path)
    assert frame["id"].tolist() == ["a", "b"] and frame["title"].tolist() == ["Tower", "Tower"]
    assert json.loads(frame.loc[1, "answers"]) == {"text": [], "answer_start": []}
    assert QA.detect_format(path, "json") == "squad"


def test_the_overlap_baseline_picks_the_span_beside_the_questions_words():
    context = "The tower stands in the old city of Paris, by a wide river. The bridge was built in 1889."
    idf = idf_table([context, "Other text about rivers.", "Paris is large."])
    answer = overlap_answer("When was the bridge built?", context, idf)
    assert "1889" in answer["text"] and context[answer["start"] : answer["end"]] == answer["text"]


def test_the_trainer_reads_validation_windows_in_their_order():
    # transformers 5 groups evaluation batches by length like training ones; answers are rebuilt from windows by position
    import torch
    from datasets import Dataset
    from transformers import Trainer

    from task_types.question_answering import InOrderEvaluation

    windows = Dataset.from_dict({"input_ids": [[1] * n for n in (5, 50, 3, 40, 7)]})
    trainer = type("QATrainer", (*QA.trainer_mixins(), Trainer), {}).__new__(type("QATrainer", (*QA.trainer_mixins(), Trainer), {}))
    assert InOrderEvaluation in QA.trainer_mixins()
    sampler = trainer._get_eval_sampler(windows)
    assert isinstance(sampler, torch.utils.data.SequentialSampler) and list(sampler) == [0, 1, 2, 3, 4]
