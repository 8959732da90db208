"""The registered model as an MLflow pyfunc that answers exactly as flows/predict.py does.

`mlflow.pyfunc.load_model(uri).predict(frame, params=...)`, `mlflow models serve` and a container from
`mlflow models build-docker` all run FinetuneFlowModel: the project's Predictor (tasks/serving/predictor.py) over the
fine-tuned weights, which are plain files among the model's artifacts. It is logged as code (models from code, no
pickle): loading runs the project code logged with the version and nothing from the model folder; the weights load
through the project's safe loader, with trust_remote_code off.

Predict's options are the model's inference params, under the same names: precision (auto|fp32|bf16), batch_size,
max_length (0: as trained), output_prefix, pre_tokenized and the task type's own (top_k for question answering).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc

WEIGHTS = "weights"  # the artifact key (and folder under artifacts/) holding the weights, tokenizer and config


def params_schema(task_type, info: dict):
    """The inference params predict's options become (defaults as predict's)."""
    from mlflow.types import ParamSchema, ParamSpec

    specs = [
        ParamSpec("precision", "string", "auto"),
        ParamSpec("batch_size", "long", 128),
        ParamSpec("max_length", "long", 0),
        ParamSpec("output_prefix", "string", ""),
        ParamSpec("pre_tokenized", "boolean", False),
        ParamSpec("explain", "boolean", False),
        ParamSpec("explain_top", "long", 0),
    ]
    specs += [ParamSpec(name, kind, default) for name, kind, default in task_type.predict_params()]
    return ParamSchema(specs)


def signature(task_type, info: dict):
    """The signature: the input columns the model was trained on, its task type's output columns and predict_error, the params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from tasks.serving.predictor import ERROR_COLUMN

    kinds = {"string": "string", "double": "double", "long": "long"}
    inputs = [ColSpec("string", column) for column in task_type.predict_inputs(info, {}).values()]
    outputs = [ColSpec(kinds[kind], name) for name, kind in task_type.output_schema(info["target"])] + [ColSpec("string", ERROR_COLUMN)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params_schema(task_type, info))


class FinetuneFlowModel(mlflow.pyfunc.PythonModel):
    """A fine-tuned model answering frames of rows with its task type's full output rule."""

    def load_context(self, context) -> None:
        from tasks.serving.safe_load import load_weights

        self.model, self.tokenizer = load_weights(Path(context.artifacts[WEIGHTS]), "this logged model")

    def predict(self, context, model_input, params: dict | None = None):
        import pandas as pd
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from schemas.errors import FinetuneError
        from task_types.inference import cpu_has_fast_bf16
        from tasks.serving.predictor import PredictOptions, Predictor

        params = dict(params or {})
        precision = params.pop("precision", "auto")
        if precision not in ("auto", "fp32", "bf16"):
            raise MlflowException(f"params.precision={precision!r}: choose auto, fp32 or bf16", error_code=INVALID_PARAMETER_VALUE)
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        options = PredictOptions(
            max_length=int(params.pop("max_length", 0) or 0) or None,
            batch_size=int(params.pop("batch_size", 128) or 128),
            bf16=precision == "bf16" or (precision == "auto" and cpu_has_fast_bf16()),
            pre_tokenized=bool(params.pop("pre_tokenized", False)),
            output_prefix=str(params.pop("output_prefix", "") or ""),
            explain=bool(params.pop("explain", False)),
            explain_top=int(params.pop("explain_top", 0) or 0) or None,
            extra={k: v for k, v in params.items() if v is not None},
        )
        try:
            predictor = Predictor(self.model, self.tokenizer, options)
            predictor.check_columns(list(frame.columns), "the request")
            return predictor.predict(frame.reset_index(drop=True))
        except FinetuneError as err:  # a 4xx with the reason (a missing column, a clash), not a 500
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
