"""The file MLflow logs as the model's code (models from code): loading a registered version runs this, the project
code logged beside it, and nothing else."""

from mlflow.models import set_model

from tasks.serving.pyfunc import FinetuneFlowModel

set_model(FinetuneFlowModel())
