import json

import pytest

from schemas.errors import ConfigError
from tasks.serving.safe_load import load_folder, remote_code_reasons


def _logged(folder, config, tokenizer_config=None, model_class="BertForSequenceClassification"):
    (folder / "model").mkdir(parents=True)
    (folder / "components" / "tokenizer").mkdir(parents=True)
    (folder / "model" / "config.json").write_text(json.dumps(config))
    (folder / "components" / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config or {"tokenizer_class": "BertTokenizer"})
    )
    (folder / "MLmodel").write_text(f"flavors:\n  transformers:\n    model_type: {model_class}\n    tokenizer_type: BertTokenizerFast\n")
    return folder


def test_a_plain_bert_needs_no_code_of_its_own(tmp_path):
    assert remote_code_reasons(_logged(tmp_path, {"model_type": "bert"})) == []


@pytest.mark.parametrize(
    "config, tokenizer_config, model_class, reason",
    [
        (
            {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}},
            None,
            "BertForSequenceClassification",
            "model/config.json has an auto_map entry",
        ),
        ({"model_type": "evil"}, None, "BertForSequenceClassification", "model_type 'evil', which transformers does not know"),
        ({"model_type": "bert"}, {"tokenizer_class": "EvilTokenizer"}, "BertForSequenceClassification", "tokenizer_class 'EvilTokenizer'"),
        (
            {"model_type": "bert"},
            {"auto_map": {"AutoTokenizer": ["evil.Tok", None]}},
            "BertForSequenceClassification",
            "tokenizer_config.json has an auto_map entry",
        ),
        ({"model_type": "bert"}, None, "EvilForSequenceClassification", "MLmodel names class 'EvilForSequenceClassification'"),
    ],
)
def test_what_would_run_the_folders_own_code_is_named(tmp_path, config, tokenizer_config, model_class, reason):
    folder = _logged(tmp_path, config, tokenizer_config, model_class)
    assert any(reason in found for found in remote_code_reasons(folder))
    with pytest.raises(
        ConfigError,
        match="needs code from its own files to load .* refused, nothing from it was run: if you trust it, pass --trust-remote-code",
    ):
        load_folder(folder, "models:/x/1", trust_remote_code=False, opt_in="pass --trust-remote-code")
