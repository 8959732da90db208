"""train.freeze_layers and train.layer_lr_decay on the tiny BERT: which parameters learn, at which rate."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, TrainingArguments

from schemas.config import TrainConfig
from schemas.errors import ConfigError
from tasks.training.layers import (
    UsedRows,
    dropout_overrides,
    fold_used_rows,
    freeze_bottom,
    freeze_word_embeddings,
    layer_decay_optimizer,
    layer_param_groups,
    parameter_depths,
    train_used_rows,
    used_token_ids,
)


@pytest.fixture
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)


def _grads_after_one_step(model) -> dict[str, bool]:
    batch = {
        "input_ids": torch.tensor([[101, 2307, 2143, 102]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([1]),
    }
    model(**batch).loss.backward()
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}


def test_depths_count_from_the_embeddings_up(tiny):
    depths = parameter_depths(tiny)
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["bert.encoder.layer.1.output.dense.bias"] == 2
    assert depths["classifier.weight"] == depths["bert.pooler.dense.weight"] == 3


def test_freeze_one_layer_leaves_embeddings_and_layer_0_without_gradients(tiny):
    frozen = freeze_bottom(tiny, 1)
    grads = _grads_after_one_step(tiny)
    assert frozen and all(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in frozen)
    for name, has_grad in grads.items():
        below = name.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
        assert has_grad is not below, name
    assert not any(tiny.get_parameter(n).requires_grad for n in frozen)


def test_freeze_zero_is_off_and_too_many_layers_is_a_config_error(tiny):
    assert freeze_bottom(tiny, 0) == []
    assert all(_grads_after_one_step(tiny).values())
    with pytest.raises(ConfigError, match=r"train.freeze_layers=3 but the model has 2 encoder layers"):
        freeze_bottom(tiny, 3)


def test_freeze_embeddings_stops_only_the_word_embedding_matrix(tiny):
    assert freeze_word_embeddings(tiny, False) == []
    assert freeze_word_embeddings(tiny, True) == ["bert.embeddings.word_embeddings.weight"]
    grads = _grads_after_one_step(tiny)
    assert [name for name, has_grad in grads.items() if not has_grad] == ["bert.embeddings.word_embeddings.weight"]
    assert grads["bert.embeddings.position_embeddings.weight"] and grads["bert.encoder.layer.0.attention.self.query.weight"]


def test_dropout_sets_the_keys_each_architecture_has():
    bert = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "classifier_dropout": None}
    assert dropout_overrides(bert, None) == {}
    assert dropout_overrides(bert, 0.0) == {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    assert dropout_overrides({"dropout": 0.1, "attention_dropout": 0.1, "seq_classif_dropout": 0.2}, 0.05) == {
        "dropout": 0.05,
        "attention_dropout": 0.05,
    }
    assert dropout_overrides({"hidden_size": 32}, 0.0) == {}  # none it knows: the model keeps its own (fine_tune warns)
    assert dropout_overrides({"dropout_rate": 0.1, "classifier_dropout": None, "hidden_dropout": None}, 0.0) == {"dropout_rate": 0.0}
    with pytest.raises(ValueError):
        TrainConfig(dropout=1.0)


def test_layer_lr_decay_gives_each_depth_its_rate(tiny):
    groups = layer_param_groups(tiny, learning_rate=1e-3, weight_decay=0.01, decay=0.5)
    rate = {}
    for group in groups:
        for p in group["params"]:
            rate[p] = group["lr"]
    named = dict(tiny.named_parameters())
    assert rate[named["classifier.weight"]] == pytest.approx(1e-3)
    assert rate[named["bert.encoder.layer.1.attention.self.query.weight"]] == pytest.approx(5e-4)
    assert rate[named["bert.encoder.layer.0.attention.self.query.weight"]] == pytest.approx(2.5e-4)
    assert rate[named["bert.embeddings.word_embeddings.weight"]] == pytest.approx(1.25e-4)
    assert groups[0]["lr"] == pytest.approx(1e-3)  # the head first: the Trainer logs the first group's rate
    assert len(rate) == len(named)  # every parameter in exactly one group
    no_decay = {n for n, p in named.items() if any(p is q for g in groups if g["weight_decay"] == 0.0 for q in g["params"])}
    assert "bert.encoder.layer.0.attention.self.query.bias" in no_decay and "bert.embeddings.LayerNorm.weight" in no_decay
    assert "bert.encoder.layer.0.attention.self.query.weight" not in no_decay


def test_frozen_parameters_stay_out_of_the_optimizer(tiny, tmp_path):
    freeze_bottom(tiny, 2)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=2e-4, weight_decay=0.0, use_cpu=True, report_to="none")
    optimizer = layer_decay_optimizer(tiny, args, 0.9)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in tiny.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert sorted({round(g["lr"], 10) for g in optimizer.param_groups}) == [2e-4]  # only the head and pooler learn
    assert type(optimizer).__name__ == "AdamW"


def test_options_are_off_by_default_and_validated():
    assert TrainConfig().freeze_layers == 0 and TrainConfig().layer_lr_decay == "auto" and TrainConfig().freeze_embeddings is False
    assert TrainConfig().dropout == 0.0  # measured faster at equal accuracy; null keeps the model's own
    with pytest.raises(ValueError):
        TrainConfig(layer_lr_decay=1.5)
    with pytest.raises(ValueError):
        TrainConfig(freeze_layers=-1)


def test_fine_tune_with_both_options_trains_and_keys_apart(prefect_server, make_config, toy_csv):
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    cfg = make_config(data={"path": str(toy_csv)})
    raw = ingest_data.fn(cfg.data, cfg.cache, cfg.task)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache, cfg.task), cfg.data, cfg.cache, cfg.seed, cfg.task)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    plain = fine_tune.fn(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task)
    layered = cfg.train.model_copy(update={"freeze_layers": 1, "layer_lr_decay": 0.8})
    result = fine_tune.fn(tokens, cfg.model, layered, cfg.cache, cfg.seed, cfg.task)
    assert result.key != plain.key and result.frozen_parameters > 0 and plain.frozen_parameters == 0
    rates = [e["learning_rate"] for e in result.history if "learning_rate" in e]
    assert rates and max(rates) <= cfg.train.learning_rate
    models_own = fine_tune.fn(tokens, cfg.model, cfg.train.model_copy(update={"dropout": None}), cfg.cache, cfg.seed, cfg.task)
    assert models_own.key not in (plain.key, result.key)
    assert AutoConfig.from_pretrained(models_own.path).hidden_dropout_prob == 0.1  # the tiny BERT's own
    assert AutoConfig.from_pretrained(plain.path).hidden_dropout_prob == 0.0  # the default


# ---- train.embedding_rows=used ------------------------------------------------------------------------------------
TRAIN_IDS = [[101, 2307, 2143, 102], [101, 2023, 2003, 2307, 102]]  # the "training data": 6 distinct tokens


def _batches():
    """Two padded training batches of TRAIN_IDS' tokens (0 is [PAD])."""
    ids = torch.tensor([[101, 2307, 2143, 102, 0], [101, 2023, 2003, 2307, 102]])
    return [{"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([1, 0])}] * 3


def _train(model, weight_decay: float) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=weight_decay)
    for batch in _batches():
        optimizer.zero_grad()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def test_used_token_ids_are_the_distinct_ids_without_padding():
    assert used_token_ids([[101, 7, 0, 7], [0, 3]], padding_idx=0).tolist() == [3, 7, 101]
    assert used_token_ids([[5, 5]], padding_idx=None).tolist() == [5]


def test_used_rows_look_up_what_the_whole_table_does(tiny):
    embedding = tiny.get_input_embeddings()
    ids = torch.tensor([[101, 2307, 0, 999, 2143]])  # 0 and 999 are not training tokens: they read the loaded table
    expected = embedding(ids)
    assert train_used_rows(tiny, TRAIN_IDS, "used") == 6
    used = tiny.get_input_embeddings()
    assert isinstance(used, UsedRows) and used.rows.shape == (6, embedding.embedding_dim)
    assert torch.equal(used(ids), expected)
    trainable = [n for n, p in tiny.named_parameters() if p.requires_grad and "word_embeddings" in n]
    assert trainable == ["bert.embeddings.word_embeddings.rows"]


def test_training_used_rows_gives_the_model_dense_adamw_gives_and_saves_a_plain_embedding(tiny_model_dir, tmp_path):
    def trained(setting: str):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
        model.eval()  # no dropout: the two runs see the same numbers
        train_used_rows(model, TRAIN_IDS, setting)
        _train(model, weight_decay=0.0)
        fold_used_rows(model)
        return model

    whole, used = trained("all"), trained("used")
    assert isinstance(used.get_input_embeddings(), torch.nn.Embedding)
    for (name, a), b in zip(whole.state_dict().items(), used.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    loaded = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).get_input_embeddings().weight
    moved = (used.get_input_embeddings().weight - loaded).abs().sum(dim=1).nonzero().flatten().tolist()
    assert moved == [101, 102, 2003, 2023, 2143, 2307]  # the training tokens' rows learned; no other row moved
    used.save_pretrained(tmp_path / "m")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(again.get_input_embeddings().weight, used.get_input_embeddings().weight)


def test_used_rows_stay_whole_where_they_cannot_or_should_not(tiny):
    assert train_used_rows(tiny, TRAIN_IDS, "all") is None
    freeze_word_embeddings(tiny, True)
    assert train_used_rows(tiny, TRAIN_IDS, "used") is None  # frozen: nothing trains anyway
    assert isinstance(tiny.get_input_embeddings(), torch.nn.Embedding)


def test_used_rows_leave_alone_a_scaled_or_shared_embedding(tiny):
    class Scaled(torch.nn.Embedding):  # as Gemma's and BART's scaled embeddings: a lookup of their own
        def forward(self, ids):
            return super().forward(ids) * 2.0

    plain = tiny.get_input_embeddings()
    scaled = Scaled(plain.num_embeddings, plain.embedding_dim, padding_idx=plain.padding_idx)
    tiny.set_input_embeddings(scaled)
    assert train_used_rows(tiny, TRAIN_IDS, "used") is None and tiny.get_input_embeddings() is scaled
    tiny.set_input_embeddings(plain)
    tiny.shared = plain  # one table under two names, as T5's and BART's encoder and decoder share theirs
    assert train_used_rows(tiny, TRAIN_IDS, "used") is None and tiny.get_input_embeddings() is plain
