"""Zero-Shot Tokenizer Transfer (ZeTT): a hypernetwork that predicts a token's embedding from its base-tokenizer pieces.

Minixhofer, Ponti & Vulić 2024, https://arxiv.org/abs/2405.07883 (code: github.com/bminixhofer/zett). A token of
the new vocabulary is spelled with the base tokenizer (at most ``max_pieces`` base ids, its *surface form*, §3.2);
the pieces are looked up in the base model's own embedding matrix, standardised per dimension (the paper's fixed
rescaler), projected, run through a small transformer encoder, and the first position is projected back to an
embedding row. The base embeddings are an input, not a parameter, so a hypernetwork trained for a base model also
serves its fine-tuned variants (§5.4).

``residual=True`` (the default here) adds the prediction to the mean of the pieces' rows, FVT's initialisation,
and starts the last layer at zero: an untrained hypernetwork *is* FVT, and a base token spelled by itself gets
exactly its own row. ``residual=False`` predicts the row from scratch (around the embeddings' mean), the paper's
network, which then needs its identity warm-up (``zoo.transfer.zett_train``). The training loop over sampled
tokenizers lives in ``zett_train``; ``predict_embeddings`` / ``transfer_file_zett`` apply a trained one.

    zoo transfer model.safetensors --old BASE --new NEW --method zett --hypernet DIR -o new.safetensors
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.analysis.vocab import Vocabulary, load_vocabulary
from zoo.errors import ZooError
from zoo.pretrained import PretrainedModule, atomic_write_bytes, from_folder
from zoo.transfer.embeddings import TransferResult, _normal_rows, _overlap, read_tensors

PAD = -1  # padding of a surface form


class ProjectorBlock(nn.Module):
    """x + MLP(x), then LayerNorm: the projector on both ends of the paper's hypernetwork."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + F.gelu(self.mlp(x), approximate="tanh"))


class ZettHypernet(PretrainedModule):
    """Surface forms [N, P] of base ids (``PAD``-filled) plus base embeddings [V_base, D] -> embeddings [N, D].

    ``embedding_dim`` is the width of the predicted row: the input table's width for a tied model, input and
    output tables side by side for an untied one (``tables`` names them, as key suffixes of the model's file).
    """

    modality: ClassVar[str] = "tokens"

    def __init__(
        self,
        base_vocab_size: int,
        embedding_dim: int,
        hidden: int = 128,
        depth: int = 2,
        heads: int = 4,
        max_pieces: int = 7,
        residual: bool = True,
        tables: list[str] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if base_vocab_size < 1 or embedding_dim < 1 or max_pieces < 1 or depth < 1:
            raise ZooError(
                f"ZettHypernet: need base_vocab_size, embedding_dim, max_pieces, depth >= 1; got {base_vocab_size}, "
                f"{embedding_dim}, {max_pieces}, {depth}"
            )
        if hidden % heads:
            raise ZooError(f"ZettHypernet: hidden {hidden} must be divisible by heads {heads}")
        self.base_vocab_size, self.embedding_dim, self.max_pieces = base_vocab_size, embedding_dim, max_pieces
        self.residual = residual
        self.tables = list(tables or ["token_embedding.weight"])
        # The rescaler (fixed, fitted to the base embeddings by fit_scale): the network works in standard units.
        self.register_buffer("embedding_mean", torch.zeros(embedding_dim))
        self.register_buffer("embedding_std", torch.ones(embedding_dim))
        self.input_projection = nn.Sequential(nn.Linear(embedding_dim, hidden), ProjectorBlock(hidden, 2 * hidden))
        self.piece_position = nn.Embedding(max_pieces, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 2 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.output_projection = nn.Sequential(ProjectorBlock(hidden, 2 * hidden), nn.Linear(hidden, embedding_dim))
        generator = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            if param.ndim >= 2:
                nn.init.normal_(param, 0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        if residual:  # the untrained network adds nothing to FVT's mean
            nn.init.zeros_(self.output_projection[-1].weight)

    @torch.no_grad()
    def fit_scale(self, base_embeddings: torch.Tensor) -> None:
        """Set the rescaler to the base rows' per-dimension mean and std (done once, before training)."""
        rows = self._check_base(base_embeddings)
        self.embedding_mean.copy_(rows.mean(0))
        self.embedding_std.copy_(rows.std(0).clamp_min(1e-6))

    def _check_base(self, base_embeddings: torch.Tensor) -> torch.Tensor:
        if base_embeddings.ndim != 2 or tuple(base_embeddings.shape) != (self.base_vocab_size, self.embedding_dim):
            raise ZooError(
                f"ZettHypernet: base embeddings must be [{self.base_vocab_size}, {self.embedding_dim}] (the base "
                f"vocabulary and width it was trained for), got {list(base_embeddings.shape)}"
            )
        return base_embeddings.float()

    def forward(self, surface_forms: torch.Tensor, base_embeddings: torch.Tensor) -> torch.Tensor:
        """surface_forms [N, P <= max_pieces] (first column never ``PAD``), base_embeddings [V, D] -> [N, D]."""
        base = self._check_base(base_embeddings).to(self.embedding_mean.device)
        forms = surface_forms.to(base.device).long()
        if forms.ndim != 2 or not 1 <= forms.shape[1] <= self.max_pieces:
            raise ZooError(f"ZettHypernet: surface forms must be [N, 1..{self.max_pieces}], got {list(forms.shape)}")
        if len(forms) and (forms[:, 0] == PAD).any():
            raise ZooError("ZettHypernet: every surface form needs at least one piece (column 0 holds PAD)")
        if len(forms) and (forms.max() >= self.base_vocab_size or forms.min() < PAD):
            raise ZooError(f"ZettHypernet: surface form ids must lie in [0, {self.base_vocab_size}) or be PAD")
        width = int((forms != PAD).sum(1).max()) if len(forms) else 1
        forms = forms[:, :width]  # columns that are PAD in every row change nothing but the cost
        padding = forms == PAD  # [N, P]
        pieces = base[forms.clamp_min(0)]  # [N, P, D]
        standard = (pieces - self.embedding_mean) / self.embedding_std
        h = self.input_projection(standard) + self.piece_position(torch.arange(forms.shape[1], device=base.device))
        h = self.encoder(h, src_key_padding_mask=padding)
        delta = self.output_projection(h[:, 0]) * self.embedding_std  # [N, D], from the first position (§3.2)
        if self.residual:
            keep = (~padding).unsqueeze(-1).float()
            return (pieces * keep).sum(1) / keep.sum(1) + delta  # FVT's mean of the pieces, corrected
        return self.embedding_mean + delta


def surface_forms(base: Vocabulary, new: Vocabulary, max_pieces: int, cache: dict | None = None):
    """Each new token spelled with the base vocabulary -> (forms [V_new, max_pieces] with PAD, has_form [V_new] bool).

    Tokens without bytes (specials) have no form. Longer spellings keep their first ``max_pieces`` pieces, as the
    paper truncates at ``hn_surface_maxlen``. ``cache`` (bytes -> pieces) saves re-spelling across sampled vocabularies.
    """
    forms = torch.full((new.size, max_pieces), PAD, dtype=torch.long)
    has_form = torch.zeros(new.size, dtype=torch.bool)
    for i, data in enumerate(new.token_bytes):
        if not data:
            continue
        pieces = cache.get(data) if cache is not None else None
        if pieces is None:
            pieces = base.split(data)[:max_pieces]
            if cache is not None:
                cache[data] = pieces
        if pieces:
            forms[i, : len(pieces)] = torch.tensor(pieces)
            has_form[i] = True
    return forms, has_form


@torch.no_grad()
def predict_embeddings(
    hypernet: ZettHypernet,
    base_embeddings: torch.Tensor,
    base_tokenizer,
    new_tokenizer,
    copy_overlap: bool = True,
    seed: int = 0,
    chunk: int = 4096,
) -> TransferResult:
    """Rows [V_new, D] for ``new_tokenizer`` predicted by the hypernetwork from ``base_embeddings`` [V_base, D].

    Special tokens the base vocabulary also has keep their base rows (the paper overwrites them too); with
    ``copy_overlap`` every token the base vocabulary holds byte for byte keeps its row, as the other ``zoo transfer``
    methods do, else they are predicted like the rest (the paper's setting). New special tokens get N(mean, std).
    """
    old = base_tokenizer if isinstance(base_tokenizer, Vocabulary) else load_vocabulary(base_tokenizer)
    new = new_tokenizer if isinstance(new_tokenizer, Vocabulary) else load_vocabulary(new_tokenizer)
    if old.size != hypernet.base_vocab_size:
        raise ZooError(
            f"ZeTT: the hypernetwork was trained for a base vocabulary of {hypernet.base_vocab_size} ids, but the old "
            f"tokenizer {old.name} has {old.size}; pass the base tokenizer it was trained with"
        )
    base = hypernet._check_base(torch.as_tensor(base_embeddings))
    hypernet.eval()
    out = torch.empty(new.size, base.shape[1])
    forms, has_form = surface_forms(old, new, hypernet.max_pieces)
    predicted = torch.nonzero(has_form).flatten()
    for part in predicted.split(chunk):
        out[part] = hypernet(forms[part], base).cpu()
    overlap = _overlap(old, new)
    if not copy_overlap:
        overlap = {i: j for i, j in overlap.items() if new.token_bytes[i] is None}
    for new_id, old_id in overlap.items():
        out[new_id] = base[old_id]
    counts = {"zett": sum(1 for i in predicted.tolist() if i not in overlap)}
    rest = [i for i in range(new.size) if not has_form[i] and i not in overlap]
    if rest:
        out[rest] = _normal_rows(base, len(rest), torch.Generator().manual_seed(seed))
        counts["normal"] = len(rest)
    return TransferResult(out, copied=len(overlap), initialised=counts)


def load_hypernet(directory: str | Path) -> ZettHypernet:
    """A hypernetwork folder written by ``zoo zett-train`` (``config.json`` + ``model.safetensors``); a shipped one
    (``weights/zett-...``) is found in the installed package too."""
    from zoo.resources import resolve_resource

    path = resolve_resource(directory)
    if not path.is_dir():
        raise ZooError(f"--hypernet {directory}: no such folder")
    if not (path / "config.json").is_file():
        raise ZooError(f"--hypernet {directory}: not a hypernetwork folder (no config.json); train one with "
                       "`python -m zoo.transfer.zett_command` or use the shipped weights/zett-adt-gpt-bpe32k")
    model = from_folder(path)
    if not isinstance(model, ZettHypernet):
        raise ZooError(f"--hypernet {directory}: holds a {type(model).__name__}, not a ZettHypernet")
    return model


# A tied model's one table is stored under either name (safetensors keeps one name of tensors that share memory:
# a GPT writes head.weight, a TextLM gpt.token_embedding.weight).
TIED_NAMES = ("token_embedding.weight", "head.weight")


def _table_keys(tensors: dict, suffixes: list[str], rows: int, where: str) -> list[str]:
    """The file's key for each table suffix the hypernetwork predicts, in the hypernetwork's order."""
    keys = []
    for suffix in suffixes:
        names = TIED_NAMES if list(suffixes) == [TIED_NAMES[0]] else (suffix,)
        found = [
            k
            for k in tensors
            if any(k == n or k.endswith("." + n) for n in names) and tuple(tensors[k].shape[:1]) == (rows,)
        ]
        if len(found) != 1:
            candidates = sorted(k for k, t in tensors.items() if t.ndim == 2 and t.shape[0] == rows)
            raise ZooError(
                f"{where}: the hypernetwork predicts the table {suffix!r}, and {len(found)} tensors with {rows} rows "
                f"match it (tables with {rows} rows: {candidates}); pass --key for each table, in its order"
            )
        keys.append(found[0])
    return keys


def transfer_file_zett(
    embeddings_path: str | Path,
    old_tokenizer,
    new_tokenizer,
    output_path: str | Path,
    hypernet: ZettHypernet | str | Path,
    keys: list[str] | None = None,
    copy_overlap: bool = True,
    seed: int = 0,
) -> dict[str, TransferResult]:
    """``transfer_file`` with the hypernetwork: rewrite the tables it predicts (input, and output when untied) for
    the new vocabulary, keep every other tensor, write atomically. ``keys`` names the tables in the hypernetwork's
    order; by default the tensors whose names end with its ``tables``."""
    from safetensors.torch import save

    if not isinstance(hypernet, ZettHypernet):
        hypernet = load_hypernet(hypernet)
    old, new = load_vocabulary(old_tokenizer), load_vocabulary(new_tokenizer)
    tensors, metadata = read_tensors(embeddings_path)
    if keys is None:
        keys = _table_keys(tensors, hypernet.tables, old.size, str(embeddings_path))
    for key in keys:
        if key not in tensors:
            raise ZooError(f"{embeddings_path}: no tensor named {key!r} (has {sorted(tensors)})")
        if tensors[key].ndim != 2 or tensors[key].shape[0] != old.size:
            raise ZooError(f"{embeddings_path}: tensor {key!r} is {list(tensors[key].shape)}, expected "
                           f"[{old.size}, D] rows of the old tokenizer")
    widths = [tensors[k].shape[1] for k in keys]
    if sum(widths) != hypernet.embedding_dim:
        raise ZooError(
            f"{embeddings_path}: tables {keys} are {widths} wide ({sum(widths)} together); the hypernetwork "
            f"predicts rows {hypernet.embedding_dim} wide (tables {hypernet.tables})"
        )
    base = torch.cat([tensors[k].float() for k in keys], dim=1)
    result = predict_embeddings(hypernet, base, old, new, copy_overlap=copy_overlap, seed=seed)
    results = {}
    for key, part in zip(keys, result.embeddings.split(widths, dim=1)):
        tensors[key] = part.to(tensors[key].dtype).contiguous()
        results[key] = TransferResult(part, result.copied, dict(result.initialised))
    metadata = {**metadata, "zoo_transfer_method": "zett", "zoo_transfer_keys": ",".join(keys)}
    atomic_write_bytes(output_path, save(tensors, metadata=metadata))
    return results
