"""Which words made the model decide: integrated gradients on the word-embedding layer (Captum's
LayerIntegratedGradients), folded from pieces into words, and their faithfulness measured (ERASER).

- Baseline: the same input with every piece but the special tokens ([CLS], [SEP]) replaced by the pad token.
- Target: a scalar of the model's output chosen by the task type (the predicted label's logit, a predicted entity's
  tag logits, an answer's start logit, ...): `selector` weights the model's flattened output; the attribution of a
  piece is its embedding's attribution summed over the hidden dimension; a word's is the sum of its pieces'.
- Completeness: the attributions of a row sum to target(input) - target(baseline) up to the convergence delta, which
  is kept (explain_delta).
- Faithfulness (DeYoung et al., 2020, ERASER): comprehensiveness is the drop in the predicted output's probability
  when the top-k% attributed words are removed, against removing as many random words; sufficiency the drop when
  only they are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

TOP_SHARE = 0.2  # ERASER's k: the top 20% of a row's words by attribution


@dataclass
class Request:
    """One attribution to compute: a tokenized input, the weights that make its target scalar from the model's
    flattened output, and how its pieces fold into words."""

    row: int
    name: str  # what is explained ("" for the row's one prediction; a label, an entity, "start"/"end")
    columns: dict[str, list[int]]  # input_ids, attention_mask (and token_type_ids) of one input
    selector: np.ndarray  # weights over the flattened output of this input (its own length where the output has one)
    piece_words: list[int]  # the word each piece belongs to (-1: a special token or padding)
    words: list[str]
    extra: dict = field(default_factory=dict)


@dataclass
class Attribution:
    """A request's answer: a score per word (in the row's word order) and the completeness gap."""

    request: Request
    scores: np.ndarray
    delta: float

    def pairs(self, top: int | None = None) -> list[list]:
        """[[word, score], ...] in word order; with top, only the top words by magnitude (still in word order)."""
        keep = range(len(self.scores))
        if top:
            keep = sorted(np.argsort(-np.abs(self.scores))[:top])
        return [[self.request.words[i], round(float(self.scores[i]), 6)] for i in keep]


def fold_words(encoding, index: int, texts: list[str], sequences: list | None = None) -> tuple[list[int], list[str]]:
    """(the word of each piece, -1 for specials; the words' text) of one encoded input of a fast tokenizer: a word is the
    span from its first piece's start to its last piece's end in its own text (the pair's second text after the first).
    Given a list as sequences, each word's text index (0, or 1 for the pair's second text) is appended to it."""
    sequence_ids, word_ids, offsets = encoding.sequence_ids(index), encoding.word_ids(index), encoding["offset_mapping"][index]
    order: dict[tuple[int, int], int] = {}
    spans: list[list[int]] = []
    piece_words = []
    for sequence, word, (start, end) in zip(sequence_ids, word_ids, offsets):
        if sequence is None or word is None:
            piece_words.append(-1)
            continue
        key = (sequence, word)
        if key not in order:
            order[key] = len(order)
            spans.append([sequence, start, end])
        spans[order[key]][2] = max(spans[order[key]][2], end)
        piece_words.append(order[key])
    if sequences is not None:
        sequences.extend(sequence for sequence, _, _ in spans)
    return piece_words, [texts[sequence][start:end] for sequence, start, end in spans]


def word_scores(piece_scores: np.ndarray, piece_words: list[int], n_words: int) -> np.ndarray:
    """Piece attributions summed per word."""
    scores = np.zeros(n_words, dtype=np.float64)
    for score, word in zip(piece_scores, piece_words):
        if word >= 0:
            scores[word] += float(score)
    return scores


def _pad(values: list[list[int]], value: int) -> np.ndarray:
    width = max(len(v) for v in values)
    return np.array([v + [value] * (width - len(v)) for v in values], dtype=np.int64)


def attribute(
    model, tokenizer, requests: list[Request], flatten: Callable, steps: int, batch_size: int, device: str = "cpu", same_shape: bool = True
) -> list[Attribution]:
    """Integrated gradients for every request: batched by length when the selector does not depend on it (same_shape),
    else one input at a time. flatten(model output) -> (batch, K) tensor the selectors weigh."""
    import torch
    from captum.attr import LayerIntegratedGradients

    model.to(device).eval()
    pad, specials = tokenizer.pad_token_id or 0, set(tokenizer.all_special_ids) - {tokenizer.pad_token_id, tokenizer.unk_token_id}
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in requests[0].columns] if requests else []

    def forward(input_ids, attention_mask, *rest):
        *others, selector = rest
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **dict(zip(names[2:], others))}
        return (flatten(model(**inputs)).float() * selector).sum(-1)

    explainer = LayerIntegratedGradients(forward, model.get_input_embeddings())
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].columns["input_ids"]))
    size = max(1, batch_size) if same_shape else 1
    found: list[Attribution | None] = [None] * len(requests)
    for start in range(0, len(order), size):
        chunk = [requests[i] for i in order[start : start + size]]
        ids = _pad([r.columns["input_ids"] for r in chunk], pad)
        mask = _pad([r.columns["attention_mask"] for r in chunk], 0)
        others = [torch.tensor(_pad([r.columns[n] for r in chunk], 0), device=device) for n in names[2:]]
        selector = torch.tensor(np.stack([r.selector for r in chunk]), dtype=torch.float32, device=device)
        keep = np.isin(ids, list(specials)) | (mask == 0)
        input_ids = torch.tensor(ids, device=device)
        baseline = torch.tensor(np.where(keep, ids, pad), device=device)
        attributions, delta = explainer.attribute(
            inputs=input_ids,
            baselines=baseline,
            additional_forward_args=(torch.tensor(mask, device=device), *others, selector),
            n_steps=steps,
            internal_batch_size=max(1, batch_size) * steps if same_shape else steps,
            return_convergence_delta=True,
        )
        pieces = (attributions.sum(-1) * torch.tensor(mask, device=device)).detach().cpu().numpy()
        for j, request in enumerate(chunk):
            length = len(request.columns["input_ids"])
            scores = word_scores(pieces[j, :length], request.piece_words, len(request.words))
            found[order[start + j]] = Attribution(request, scores, float(delta[j].detach().cpu()))
    return found


def top_words(scores: np.ndarray, share: float = TOP_SHARE) -> list[int]:
    """The indices of the top share of words by attribution towards the prediction (at least one)."""
    k = max(1, int(round(len(scores) * share)))
    return sorted(np.argsort(-scores)[:k].tolist())


def random_words(n_words: int, k: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(n_words, size=min(k, n_words), replace=False).tolist())


def as_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def shade_html(rows: list[dict], title: str) -> str:
    """An HTML page of explained rows, each word shaded by its attribution (green towards the prediction, red against)."""
    import html

    def word(w: str, s: float, scale: float) -> str:
        alpha = min(1.0, abs(s) / scale) if scale else 0.0
        colour = f"rgba(0,160,60,{alpha:.2f})" if s >= 0 else f"rgba(220,40,40,{alpha:.2f})"
        return f'<span style="background:{colour}" title="{s:+.4f}">{html.escape(w)}</span>'

    blocks = []
    for row in rows:
        for name, pairs in row["explanations"].items():
            scale = max((abs(s) for _, s in pairs), default=0.0)
            label = f" — {html.escape(name)}" if name else ""
            text = " ".join(word(w, s, scale) for w, s in pairs)
            blocks.append(
                f"<div class='row'><div class='head'>{html.escape(row['kind'])}: predicted {html.escape(str(row['predicted']))}, "
                f"true {html.escape(str(row['truth']))}{label}</div><div>{text}</div></div>"
            )
    style = (
        "body{font-family:sans-serif;max-width:60em}.row{margin:1em 0;line-height:1.8}.head{font-size:80%;color:#555}span{padding:1px 2px}"
    )
    legend = "Words shaded by integrated-gradients attribution: green pushes towards the prediction, red against it."
    head = f"<head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body><h1>{html.escape(title)}</h1><p>{legend}</p>{''.join(blocks)}</body></html>"


def explain_examples(task_type, model, tokenizer, frame, truth, outputs, info: dict, settings, runner, folder) -> dict:
    """Every run's explanations: the settings.examples most confident validation errors and as many correct rows,
    attributed, measured for faithfulness, and written as explanations.html and explanations.json into folder.
    Returns {"metrics": explain_*, "top_words": {prediction: [[word, mean score], ...]}, "rows", "seconds_per_row"}."""
    import time

    started = time.perf_counter()
    errors, correct = task_type.pick_explained(truth, outputs, info["target"], info["decision"], settings.examples)
    chosen = errors + correct
    if not chosen:
        return {}
    rows = task_type.rows_for_rescoring(frame).iloc[chosen].reset_index(drop=True)
    picked = [outputs[i] for i in chosen]
    answered = task_type.run_rows(model, tokenizer, rows, info, runner, {"pre_tokenized": True})  # as predict gives them
    requests = task_type.explain_requests(tokenizer, rows, answered, info)
    attributions = attribute(
        model,
        tokenizer,
        requests,
        task_type.explain_output,
        settings.steps,
        settings.batch_size,
        runner.device,
        task_type.explain_batchable,
    )
    metrics = task_type.faithfulness(model, tokenizer, rows, attributions, info, runner, seed=0)
    metrics["explain_delta"] = float(np.mean([abs(a.delta) for a in attributions])) if attributions else 0.0
    by_row: dict[int, list] = {}
    for attribution in attributions:
        by_row.setdefault(attribution.request.row, []).append(attribution)
    explained, sums = [], {}
    for n, index in enumerate(chosen):
        found = by_row.get(n, [])
        predicted = task_type.describe(picked[n], info["target"], info["decision"])
        explanation = task_type.explanation(found) if found else []
        explained.append(
            {
                "kind": "error" if n < len(errors) else "correct",
                "row_id": int(frame["row_id"].iloc[index]) if "row_id" in frame else index,
                "predicted": predicted,
                "truth": truth[index].tolist() if hasattr(truth[index], "tolist") else truth[index],
                "explanations": explanation if isinstance(explanation, dict) else {"": explanation},
            }
        )
        for name, pairs in explained[-1]["explanations"].items():
            for word, score in pairs:
                sums.setdefault(name or predicted.split(" (")[0], {}).setdefault(word.lower(), []).append(score)
    top = {
        name: [[w, round(float(np.mean(v)), 6)] for w, v in sorted(words.items(), key=lambda kv: -np.mean(kv[1]))[:8]]
        for name, words in sorted(sums.items())
    }
    seconds = (time.perf_counter() - started) / len(chosen)
    summary = {"metrics": metrics, "top_words": top, "rows": len(chosen), "seconds_per_row": round(seconds, 4), "steps": settings.steps}
    (folder / "explanations.json").write_text(json.dumps({**summary, "explained": explained}, indent=1, ensure_ascii=False, default=str))
    (folder / "explanations.html").write_text(shade_html(explained, "Why the model decided: validation errors and correct rows"))
    return summary
