import pytest

from schemas.secrets import externalize_credentials, has_secret, mask_text, mask_uri


@pytest.mark.parametrize(
    "uri, masked",
    [
        ("http://alice:pw@host:5000/x?y=1", "http://***@host:5000/x?y=1"),
        ("postgresql://u:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("https://host/api?token=abc&page=2", "https://host/api?token=***&page=2"),
        ("s3://bucket/m?X-Amz-Signature=ff&sig=aa", "s3://bucket/m?X-Amz-Signature=***&sig=***"),
        ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ],
)
def test_userinfo_and_secret_params_are_masked(uri, masked):
    assert mask_uri(uri) == masked
    assert has_secret(uri) is (uri != masked)
    assert mask_text(f"cannot reach {uri} now") == f"cannot reach {masked} now"


def test_credentials_move_to_the_variables_mlflow_reads():
    env = {}
    assert externalize_credentials("http://alice:p%40ss@127.0.0.1:5000", env) == "http://127.0.0.1:5000"
    assert env == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "p@ss"}
    env = {}
    assert externalize_credentials("postgresql://u:pw@db/mlflow", env) is None  # the whole URI holds the secret
    assert env == {"MLFLOW_TRACKING_URI": "postgresql://u:pw@db/mlflow"}
    assert externalize_credentials("sqlite:///x.db", env) == "sqlite:///x.db" and externalize_credentials(None, env) is None
