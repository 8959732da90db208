"""Layer-wise training options: freeze the bottom of the encoder (train.freeze_layers) or the word embeddings
alone (train.freeze_embeddings), train only the word-embedding rows the training data uses (train.embedding_rows),
decay the learning rate layer by layer from the head down (train.layer_lr_decay), and set the model's dropout
(train.dropout).

Depth counts from the input: the embeddings are depth 0, encoder layer i is depth i + 1, and
everything above the encoder (pooler, head) is depth L + 1, where L is the number of layers.
"""

from __future__ import annotations

import torch
from torch import nn

from schemas.errors import ConfigError

# These options are off at these values: the fine-tune key leaves them out then, so older cache entries stay valid.
OFF = {"freeze_layers": 0, "layer_lr_decay": 1.0, "freeze_embeddings": False, "dropout": None}

# The dropout probabilities in transformers' model configs: BERT, RoBERTa, DeBERTa, ELECTRA (the first two), DistilBERT
# (dropout, attention_dropout), ModernBERT (+ mlp_dropout, embedding_dropout), Funnel/Falcon/BLOOM (hidden_dropout),
# T5 (dropout_rate), GPT-2 (*_pdrop). A head's own classifier_dropout is left as the model sets it; where a model leaves
# it unset (BERT, RoBERTa, ELECTRA) the head uses hidden_dropout_prob, so it follows train.dropout too.
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "mlp_dropout",
    "embedding_dropout",
    "hidden_dropout",
    "dropout_rate",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
)

# Trainer.get_decay_parameter_names: no weight decay on biases and norm weights.
_NO_DECAY = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def dropout_overrides(config: dict, p: float | None) -> dict:
    """The model-config keys that set dropout to p (train.dropout), among those this config has with a number; {} when
    p is None, or when the config names none of DROPOUT_KEYS (the caller says the model keeps its own dropout)."""
    if p is None:
        return {}
    return {key: p for key in DROPOUT_KEYS if isinstance(config.get(key), (int, float)) and not isinstance(config.get(key), bool)}


def encoder_parts(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(embeddings, encoder layers bottom-up) of a BERT-style model, or a ConfigError naming the options."""
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if embeddings is None or layers is None:
        raise ConfigError(
            f"train.freeze_layers and train.layer_lr_decay need a BERT-style encoder (embeddings + encoder.layer); "
            f"{type(model).__name__} has none: set train.freeze_layers=0 and train.layer_lr_decay=1.0"
        )
    return embeddings, list(layers)


def parameter_depths(model: nn.Module) -> dict[str, int]:
    """Depth of each named parameter: 0 embeddings, i + 1 encoder layer i, L + 1 the rest (pooler, head)."""
    embeddings, layers = encoder_parts(model)
    by_id = {id(p): 0 for p in embeddings.parameters()}
    for i, layer in enumerate(layers):
        by_id.update({id(p): i + 1 for p in layer.parameters()})
    top = len(layers) + 1
    return {name: by_id.get(id(p), top) for name, p in model.named_parameters()}


def freeze_bottom(model: nn.Module, n_layers: int) -> list[str]:
    """Freeze the embeddings and the bottom n_layers encoder layers; returns the frozen parameter names."""
    if n_layers <= 0:
        return []
    _, layers = encoder_parts(model)
    if n_layers > len(layers):
        raise ConfigError(f"train.freeze_layers={n_layers} but the model has {len(layers)} encoder layers: set it to at most {len(layers)}")
    frozen = [name for name, depth in parameter_depths(model).items() if depth <= n_layers]
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


def freeze_word_embeddings(model: nn.Module, freeze: bool) -> list[str]:
    """Freeze the word-embedding matrix alone (train.freeze_embeddings): no gradient and no optimizer update for
    it (in MiniLM-L6 half of all parameters); position and type embeddings and every layer still learn."""
    if not freeze:
        return []
    try:
        weight = model.get_input_embeddings().weight
    except (NotImplementedError, AttributeError):
        raise ConfigError(f"train.freeze_embeddings needs a model with input embeddings; {type(model).__name__} has none") from None
    weight.requires_grad_(False)
    return [name for name, param in model.named_parameters() if param is weight]


class UsedRows(nn.Module):
    """A word-embedding table whose trained part is only the rows of the tokens the training data uses
    (train.embedding_rows=used). A row no training token looks up gets no gradient, so plain AdamW would change it only
    by weight decay: leaving it as loaded costs nothing in what the model learns, and the optimizer, gradient clipping
    and the embedding's backward pass then handle a few thousand rows instead of the whole vocabulary (in MiniLM the
    table is half of all parameters). Validation, test and predict texts may hold other tokens: those read the loaded
    table. fold_used_rows puts the trained rows back into a plain nn.Embedding before the model is saved."""

    def __init__(self, embedding: nn.Embedding, rows: torch.Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx
        weight = embedding.weight.detach()
        self.loaded = nn.Parameter(weight, requires_grad=False)  # a parameter, not a buffer: DDP broadcasts buffers each step
        self.rows = nn.Parameter(weight[rows].clone())
        # Token id -> row of `rows` (-1: not trained). Plain tensors, neither parameters nor buffers: kept out of the
        # checkpoints (rebuilt from the same data on resume) and out of DDP's per-step broadcast of buffers.
        self.row_ids = rows.to(torch.long)
        self.slots = torch.full((self.num_embeddings,), -1, dtype=torch.long)
        self.slots[self.row_ids] = torch.arange(len(rows))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.slots.device != input_ids.device:
            self.slots = self.slots.to(input_ids.device)
        slot = self.slots[input_ids]
        trained = nn.functional.embedding(slot.clamp(min=0), self.rows)
        return torch.where((slot >= 0).unsqueeze(-1), trained, nn.functional.embedding(input_ids, self.loaded))

    def merged(self) -> torch.Tensor:
        """The whole table: the loaded rows with the trained ones written in."""
        weight = self.loaded.detach().clone()
        weight[self.row_ids.to(weight.device)] = self.rows.detach().to(weight.dtype)
        return weight


def used_token_ids(input_ids, padding_idx: int | None) -> torch.Tensor:
    """The distinct token ids of a tokenized split's input_ids column (an Arrow list column or lists), padding left out."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    column = input_ids if isinstance(input_ids, (pa.Array, pa.ChunkedArray)) else pa.array(input_ids)
    ids = np.asarray(pc.unique(pc.list_flatten(column)).to_numpy(zero_copy_only=False), dtype=np.int64)
    if padding_idx is not None:
        ids = ids[ids != padding_idx]  # its embedding gets no gradient (nn.Embedding's padding_idx), as before
    return torch.from_numpy(np.sort(ids))


def train_used_rows(model: nn.Module, input_ids, setting: str) -> int | None:
    """train.embedding_rows=used: swap the model's word embedding for UsedRows over the training data's tokens; the
    number of rows trained, or None where the table stays whole: all; frozen; tied to an output layer; shared by
    several parts (an encoder and a decoder); or not a plain nn.Embedding (a subclass may scale or change its lookup,
    as Gemma's and BART's scaled embeddings do, which UsedRows would drop)."""
    if setting != "used":
        return None
    try:
        embedding = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        return None
    if type(embedding) is not nn.Embedding or not embedding.weight.requires_grad:
        return None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return None  # tied to the output layer, which trains every row
    if sum(module is embedding for _, module in model.named_modules(remove_duplicate=False)) > 1:
        return None  # one table under several names (T5's and BART's shared embedding): one swap cannot replace them all
    rows = used_token_ids(input_ids, embedding.padding_idx)
    if len(rows) == 0 or int(rows.max()) >= embedding.num_embeddings:
        return None
    model.set_input_embeddings(UsedRows(embedding, rows))
    return len(rows)


def fold_used_rows(model: nn.Module) -> None:
    """Back to a plain nn.Embedding holding the trained rows (before the model is saved), where train_used_rows swapped it."""
    used = model.get_input_embeddings()
    if isinstance(used, UsedRows):
        model.set_input_embeddings(nn.Embedding.from_pretrained(used.merged(), freeze=False, padding_idx=used.padding_idx))


def _decays(name: str) -> bool:
    import re

    return not any(re.search(pattern, name.lower()) for pattern in _NO_DECAY)


def layer_param_groups(model: nn.Module, learning_rate: float, weight_decay: float, decay: float) -> list[dict]:
    """Optimizer groups of the trainable parameters: depth d gets learning_rate * decay ** (L + 1 - d); biases and
    norm weights no weight decay. The top group (the head, full rate) comes first: the Trainer logs its rate."""
    depths = parameter_depths(model)
    top = max(depths.values())
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((depths[name], _decays(name)), []).append(param)
    return [
        {"params": params, "lr": learning_rate * decay ** (top - depth), "weight_decay": weight_decay if decays else 0.0, "depth": depth}
        for (depth, decays), params in sorted(groups.items(), key=lambda item: (-item[0][0], not item[0][1]))
    ]


def layer_decay_optimizer(model: nn.Module, args, decay: float) -> torch.optim.Optimizer:
    """The optimizer the Trainer would build for args (class, betas, eps), over layer-wise learning-rate groups."""
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = dict(kwargs)
    learning_rate = kwargs.pop("lr", args.learning_rate)
    return optimizer_cls(layer_param_groups(model, learning_rate, args.weight_decay, decay), lr=learning_rate, **kwargs)
