"""A registered model answering rows: the one output rule flows/predict.py, the logged MLflow model (pyfunc) and
`mlflow models serve` all run, so they give the same columns and values.

The model's task type reads the input columns (text and pair, words, question and context), runs the model, and
turns its outputs into columns; rows whose inputs are null or empty get no prediction and say why in
`predict_error`. Every input column is kept as it is: an input column named like an output is refused, or the outputs
take a prefix (`output_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from schemas.errors import DataError
from task_types import get_task_type
from task_types.base import Runner
from task_types.inference import model_task

ERROR_COLUMN = "predict_error"
EXPLANATION_COLUMN = "explanation"
EXPLANATION_DELTA_COLUMN = "explanation_delta"  # the row's integrated-gradients convergence delta (largest |delta| of its targets)


@dataclass(frozen=True)
class PredictOptions:
    """How rows are read and answered: input columns by role (None: as the model was trained), tokens read per input
    (None: as trained), batch size, bf16, pre-tokenized words, a prefix for the output columns, and the type's own."""

    columns: dict[str, str | None] = field(default_factory=dict)
    max_length: int | None = None
    batch_size: int = 128
    bf16: bool = False
    pre_tokenized: bool = False
    output_prefix: str = ""
    explain: bool = False
    explain_top: int | None = None
    explain_steps: int = 20
    explain_batch_size: int = 16
    extra: dict = field(default_factory=dict)

    def for_type(self) -> dict:
        """What the task type's run_rows / predict_columns read."""
        return {"max_length": self.max_length, "pre_tokenized": self.pre_tokenized, **self.extra}


class Predictor:
    """A loaded model and its output rule, answering frames of rows."""

    def __init__(self, model, tokenizer, options: PredictOptions):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.info = model_task(model.config)
        self.task_type = get_task_type(self.info["task"]).for_target(self.info["target"])
        self.runner = Runner(options.batch_size, "cpu", options.bf16)
        self.inputs = self.task_type.predict_inputs(self.info, options.columns)
        own = {name for name, _, _ in self.task_type.predict_params()}
        stray = sorted(set(options.extra) - own)
        if stray:
            raise DataError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not an option of task={self.info['task']} models")
        if options.explain and getattr(model, "get_input_embeddings", lambda: None)() is None:
            raise DataError(
                "explanations attribute to the word-embedding layer, which this model (or runtime) does not have: drop --explain"
            )
        self.explain_seconds = 0.0

    @property
    def output_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of what predict adds, in order, prefixed as asked; predict_error last."""
        schema = self.task_type.output_schema(self.info["target"], self.options.for_type())
        schema += [(EXPLANATION_COLUMN, "string"), (EXPLANATION_DELTA_COLUMN, "double")] if self.options.explain else []
        return [(self.options.output_prefix + name, kind) for name, kind in schema] + [
            (self.options.output_prefix + ERROR_COLUMN, "string")
        ]

    def check_columns(self, columns: list[str], source: str) -> None:
        """Every input column is present and none is named like an output (it would be overwritten): one line each."""
        present = [str(c) for c in columns]
        flags = self.task_type.input_options()
        for role, column in self.inputs.items():
            if column not in present:
                raise DataError(f"column '{column}' not found in {source}; columns are {present}: set {flags.get(role, role)}")
        clash = [name for name, _ in self.output_columns if name in present]
        if clash:
            raise DataError(
                f"{source} has columns named like predict's outputs {clash}: they would be overwritten; rename them, "
                "or give the outputs a prefix with --output-prefix (params: output_prefix)"
            )

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with the model's output columns and predict_error added (inputs untouched)."""
        rows = pd.DataFrame({role: frame[column].tolist() for role, column in self.inputs.items()}, index=frame.index)
        unusable, why = self.task_type.unusable(rows)
        usable = ~unusable.to_numpy()
        spec, decision, options = self.info["target"], self.info["decision"], self.options.for_type()
        out = frame.copy()
        for name, kind in self.output_columns[:-1]:
            out[name] = np.nan if kind == "double" else None  # text and whole numbers (offsets) stay objects: no 3.0
        if usable.any():
            outputs = self.task_type.run_rows(self.model, self.tokenizer, rows[usable], self.info, self.runner, options)
            columns = self.task_type.predict_columns(outputs, spec, decision, options)
            if self.options.explain:
                columns[EXPLANATION_COLUMN], columns[EXPLANATION_DELTA_COLUMN] = self.explanations(
                    rows[usable].reset_index(drop=True), outputs
                )
            for name, values in columns.items():
                column = self.options.output_prefix + name
                if out[column].dtype != object and any(isinstance(v, str) for v in values):
                    out[column] = out[column].astype(object)
                out.loc[frame.index[usable], column] = values
        out[self.options.output_prefix + ERROR_COLUMN] = pd.Series(np.where(usable, None, why), index=frame.index, dtype=object)
        return out

    def explanations(self, rows: pd.DataFrame, outputs) -> tuple[list[str], list[float]]:
        """Each row's explanation as JSON: [[word, score], ...] in its word order (or one such list per predicted label,
        entity or answer boundary), the top words only with explain_top; and its convergence delta (all of its words'
        scores sum to target(input) - target(baseline) within it; the largest |delta| where the row has several targets,
        NaN where it has none)."""
        import json
        import time

        from task_types.explain import attribute

        started = time.perf_counter()
        requests = self.task_type.explain_requests(self.tokenizer, rows, outputs, self.info)
        found = attribute(
            self.model,
            self.tokenizer,
            requests,
            self.task_type.explain_output,
            self.options.explain_steps,
            self.options.explain_batch_size,
            self.runner.device,
            self.task_type.explain_batchable,
        )
        by_row: dict[int, list] = {}
        for attribution in found:
            by_row.setdefault(attribution.request.row, []).append(attribution)
        self.explain_seconds += time.perf_counter() - started
        texts = [
            json.dumps(self.task_type.explanation(by_row[i], self.options.explain_top) if i in by_row else [], ensure_ascii=False)
            for i in range(len(rows))
        ]
        deltas = [max(abs(a.delta) for a in by_row[i]) if i in by_row else float("nan") for i in range(len(rows))]
        return texts, deltas
