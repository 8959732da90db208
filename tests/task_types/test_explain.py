"""Explanations: pieces folded into words, the target each task type explains, integrated gradients on a model whose
answer is known, and the faithfulness scores."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from task_types import get_task_type
from task_types.base import Runner
from task_types.explain import attribute, fold_words, top_words


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, use_fast=True)


def test_pieces_fold_into_words_and_special_tokens_are_left_out(tokenizer):
    text, pair = "Unbelievably charming film!", "a second text"
    encoded = tokenizer([text], [pair], return_offsets_mapping=True)
    sequences = []
    piece_words, words = fold_words(encoded, 0, [text, pair], sequences)
    assert words == ["Unbelievably", "charming", "film", "!", "a", "second", "text"] and sequences == [0, 0, 0, 0, 1, 1, 1]
    assert len(piece_words) == len(encoded["input_ids"][0]) and piece_words[0] == -1 and piece_words[-1] == -1  # [CLS] ... [SEP]
    assert piece_words.count(0) > 1  # "Unbelievably" is several pieces, one word


class OneWordModel(torch.nn.Module):
    """A classifier that looks only at one word: class 1's logit is 5 x how often `word` occurs, class 0's is 0."""

    def __init__(self, tokenizer, word: str):
        super().__init__()
        self.embeddings = torch.nn.Embedding(tokenizer.vocab_size, 1)
        with torch.no_grad():
            self.embeddings.weight.zero_()
            self.embeddings.weight[tokenizer.convert_tokens_to_ids(word)] = 1.0
        self.config = SimpleNamespace(num_labels=2)

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hits = (self.embeddings(input_ids)[..., 0] * attention_mask).sum(-1)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(hits), 5 * hits], dim=-1))


def test_a_model_that_reads_one_word_gives_it_the_attribution_and_high_comprehensiveness(tokenizer):
    classification = get_task_type("classification")
    model = OneWordModel(tokenizer, "great")
    info = {"task": "classification", "target": {"labels": ["neg", "pos"]}, "decision": {}, "text_pair": False, "max_length": 32}
    rows = pd.DataFrame({"text": ["a great film about nothing", "the plot is thin but great fun", "great"]})
    outputs = classification.run_rows(model, tokenizer, rows, info, Runner(8))
    requests = classification.explain_requests(tokenizer, rows, outputs, info)
    assert [r.selector.tolist() for r in requests] == [[0.0, 1.0]] * 3  # the predicted label, pos
    attributions = attribute(model, tokenizer, requests, classification.explain_output, steps=20, batch_size=4)
    for attribution in attributions:
        words, scores = attribution.request.words, attribution.scores
        assert words[int(np.argmax(scores))] == "great" and abs(attribution.delta) < 1e-3
        assert scores.sum() == pytest.approx(5.0, abs=1e-3)  # completeness: logit(x) - logit(baseline)
    faithfulness = classification.faithfulness(model, tokenizer, rows, attributions, info, Runner(8), seed=0)
    assert faithfulness["explain_comprehensiveness"] > 0.4 and faithfulness["explain_random_comprehensiveness"] < 0.2
    assert faithfulness["explain_sufficiency"] < 0.05  # the word alone keeps the prediction
    assert json.loads(json.dumps(classification.explanation([attributions[0]], top=2)))[0][0] in ("great", "a", "film")


def test_each_task_type_says_what_it_explains():
    classification, multi, regression = (get_task_type(n) for n in ("classification", "multi_label", "regression"))
    assert classification.explain_targets(np.array([0.2, 0.8]), {"labels": ["a", "b"]}, {}) == [("", 1)]
    spec, decision = {"labels": ["food", "water", "tent"]}, {"thresholds": [0.5, 0.3, 0.9]}
    assert multi.explain_targets(np.array([0.6, 0.4, 0.8]), spec, decision) == [("food", 0), ("water", 1)]  # each predicted label
    assert regression.explain_targets(np.array(2.5), {"mean": 0, "std": 1}, {}) == [("", 0)]
    assert top_words(np.array([0.1, 0.9, -0.5, 0.3, 0.0])) == [1]  # 20% of 5 words: the top one


def test_token_classification_explains_each_entity_and_question_answering_the_answers_ends(tokenizer):
    tagger = get_task_type("token_classification")
    spec = {"labels": ["B-PER", "I-PER", "O"], "scheme": "IOB2"}
    proba = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05]])
    row = {
        "text": "Mary Smith met Anna",
        "words": ["Mary", "Smith", "met", "Anna"],
        "starts": [0, 5, 11, 15],
        "ends": [4, 10, 14, 19],
        "proba": proba,
    }
    requests = tagger.explain_requests(
        tokenizer, pd.DataFrame({"text": [row["text"]]}), [row], {"target": spec, "decision": {}, "max_length": 32}
    )
    assert [r.name for r in requests] == ["PER: Mary Smith", "PER: Anna"] and requests[0].words == row["words"]
    width = len(spec["labels"])
    marked = np.flatnonzero(requests[0].selector) // width  # the pieces holding the first entity's tags
    assert len(marked) == 2 and {requests[0].piece_words[p] for p in marked} == {0, 1}

    qa = get_task_type("question_answering")
    context = "The tower was built in 1889 in Paris."
    answer = {"text": "1889", "start": context.index("1889"), "end": context.index("1889") + 4, "score": 0.9}
    info = {"target": {}, "decision": {}, "max_length": 64, "doc_stride": 16}
    requests = qa.explain_requests(tokenizer, pd.DataFrame({"question": ["When was it built?"], "context": [context]}), [answer], info)
    assert [r.name for r in requests] == ["start", "end"] and "1889" in requests[0].words and "When" in requests[0].words
