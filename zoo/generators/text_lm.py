"""TextLM: a text tokenizer with a causal language model over its ids, as one evaluation candidate.

It answers ``encode`` / ``decode`` / ``token_bytes`` with its tokenizer's, so tokenizer metrics run on it
unchanged, and ``log_likelihood(prompt, continuation)`` with the LM, which ``zoo.metrics.adt`` calls (duck-typed:
metrics sit below generators). Two kinds of LM:

- ``gpt``: the zoo's GPT (``zoo.generators.gpt``) over a zoo text tokenizer (``tokenizer``: a registry name or
  folder), trained here (``benchmarks/adt_train_gpt.py``); weights are ``model.safetensors``, optionally stored in
  ``weights_dtype`` (bfloat16 halves the file) and always computed in float32;
- ``hf_model``: any transformers causal LM, by local folder or hub name (``AutoModelForCausalLM``), with its own
  ``tokenizer.json`` read through zoo (``file:``) unless ``tokenizer`` names another. Its weights stay where
  transformers keeps them: a saved TextLM folder holds only ``config.json``, so
  ``python -m zoo.generators.text_lm gpt2 runs/gpt2-lm`` makes a folder that ``zoo eval ... -t runs/gpt2-lm``
  evaluates.

Scoring, as lm-evaluation-harness does it: prompt and continuation are encoded separately and concatenated (the
tokens of the continuation are the ones the answer would be written with), and the log-probabilities of the
continuation's tokens are summed. The zoo GPT conditions the first token on its learned start embedding; a
transformers LM gets its BOS token first when ``bos`` says so (default: when the model's config has a BOS id
different from its EOS id, as Llama's has and GPT-2's has not). Long inputs lose prompt tokens from the left.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.pretrained import PretrainedModule

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TextLM(PretrainedModule):
    """A zoo text tokenizer plus a causal LM (the zoo's GPT, or a transformers model) that scores continuations."""

    modality: ClassVar[str] = "text"
    has_decoder: ClassVar[bool] = True

    def __init__(self, tokenizer: str | None = None, gpt: dict | None = None, hf_model: str | None = None,
                 weights_dtype: str = "float32", bos: bool | None = None, seed: int = 0):
        super().__init__()
        from zoo.loading import load_tokenizer

        if (gpt is None) == (hf_model is None):
            raise ZooError("TextLM: give exactly one of gpt (a zoo GPT config) and hf_model (a transformers causal LM "
                           f"folder or name); got gpt={gpt!r}, hf_model={hf_model!r}")
        if weights_dtype not in DTYPES:
            raise ZooError(f"TextLM: weights_dtype must be one of {', '.join(DTYPES)}, got {weights_dtype!r}")
        self.weights_dtype = weights_dtype
        if hf_model is not None and tokenizer is None:
            tokenizer = f"file:{_hf_tokenizer_file(hf_model)}"
        if tokenizer is None:
            raise ZooError("TextLM: a zoo GPT needs the tokenizer it reads (a registry name or folder), got none")
        # Kept outside the module tree: the tokenizer is named by the config, not saved with the LM's weights.
        object.__setattr__(self, "_tokenizer", load_tokenizer(tokenizer, frozen=True, modality="text",
                                                              owner="TextLM"))
        self.gpt = self.hf = None
        if gpt is not None:
            from zoo.generators.gpt import GPT

            for reserved in ("vocab_size", "seed"):
                if reserved in gpt:
                    raise ZooError(f"TextLM: gpt.{reserved} is set by the tokenizer and TextLM's seed; remove it")
            self.gpt = GPT(vocab_size=int(self._tokenizer.vocab_size), seed=seed, **gpt)
            self.context_length = self.gpt.context_length
            self.bos_id = None
        else:
            object.__setattr__(self, "hf", _load_hf_model(hf_model))
            config = self.hf.config
            if int(self._tokenizer.vocab_size) > int(config.vocab_size):
                raise ZooError(f"TextLM: the tokenizer has {self._tokenizer.vocab_size} ids, more than the "
                               f"{config.vocab_size} rows of {hf_model}'s embedding; they do not belong together")
            self.context_length = int(getattr(config, "n_positions", None) or config.max_position_embeddings)
            wants_bos = config.bos_token_id is not None and config.bos_token_id != config.eos_token_id
            self.bos_id = config.bos_token_id if (wants_bos if bos is None else bos) else None
            if self.bos_id is None and bos:
                raise ZooError(f"TextLM: bos=true, but {hf_model}'s config names no bos_token_id")

    # -- the tokenizer's face --------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.vocab_size)

    @property
    def lossless(self) -> bool:
        return bool(getattr(self._tokenizer, "lossless", True))

    @property
    def special_ids(self) -> dict:
        return dict(getattr(self._tokenizer, "special_ids", {}))

    def encode(self, text):
        return self._tokenizer.encode(text)

    def decode(self, ids):
        return self._tokenizer.decode(ids)

    def token_bytes(self, ids) -> list[bytes]:
        return self._tokenizer.token_bytes(ids)

    def token_strings(self, ids) -> list[str]:
        return self._tokenizer.token_strings(ids)

    # -- weights: the GPT's only (a transformers model stays in its own folder) -----------------------------
    @property
    def requires_weights(self) -> bool:
        return self.gpt is not None

    def _has_weights(self) -> bool:
        return self.gpt is not None

    def _save_weights(self, path: Path) -> None:
        from safetensors.torch import save_file

        dtype = DTYPES[self.weights_dtype]
        state = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        # Tied embeddings share one tensor; safetensors stores each name, so the head is dropped and re-tied on load.
        if self.gpt.head.weight is self.gpt.token_embedding.weight:
            state.pop("gpt.head.weight", None)
        save_file(state, str(path))

    def _load_weights(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except SafetensorError as err:
            raise ZooError(f"{path}: not a valid safetensors file ({err})") from None
        stored = DTYPES[self.weights_dtype]
        wrong = sorted(k for k, v in state.items() if v.dtype != stored)
        if wrong:
            raise ZooError(f"{path}: tensors {wrong[:4]} are not {self.weights_dtype}, which the config records")
        expected = self.state_dict()
        if self.gpt.head.weight is self.gpt.token_embedding.weight:
            expected.pop("gpt.head.weight", None)
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ZooError(f"{path}: weights do not match TextLM: missing keys {missing[:8]}, "
                           f"unexpected keys {unexpected[:8]}")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise ZooError(f"{path}: tensor {name!r} has shape {list(tensor.shape)}, TextLM holds "
                               f"{list(expected[name].shape)}")
            if not torch.isfinite(tensor).all():
                raise ZooError(f"{path}: tensor {name!r} holds NaN/Inf values")
        # stored small, computed in float32: the cast is what weights_dtype asks for
        self.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)

    # -- scoring ---------------------------------------------------------------------------------------------
    def training_losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy of the GPT on ``batch["ids"]`` [B, T]."""
        if self.gpt is None:
            raise ZooError("TextLM: a transformers model is trained with transformers, not here")
        return self.gpt.training_losses(batch, step)

    @torch.no_grad()
    def log_likelihoods(self, prompt: str, continuations: list[str]) -> list[float]:
        """Summed log-probability (nats) of each continuation's tokens after the prompt's."""
        self.eval()
        head = list(self.encode(prompt))
        prefix = [self.bos_id] if self.bos_id is not None else []
        rows, spans = [], []
        for continuation in continuations:
            tail = list(self.encode(continuation))
            room = self.context_length - len(prefix) - len(tail)
            ids = prefix + (head[max(0, len(head) - room):] if room > 0 else []) + tail
            # the zoo GPT predicts the first token from its start embedding; a transformers LM needs one token before
            if not tail or room < 0 or (self.gpt is None and len(ids) == len(tail)):
                raise ZooError(f"TextLM: continuation {continuation!r} ({len(tail)} tokens) cannot be scored after "
                               f"prompt {prompt[:40]!r} in a context of {self.context_length}")
            rows.append(ids)
            spans.append((len(ids) - len(tail), len(ids)))
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)  # [B, T], right-padded
        row_of = torch.cat([torch.full((end - start,), row) for row, (start, end) in enumerate(spans)])
        position = torch.cat([torch.arange(start, end) for start, end in spans])  # the continuations' tokens
        if self.gpt is not None:
            logits = self.gpt_logits_at(ids, row_of, position)  # [N, V]; predicts ids[row, position]
        else:
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
            device = next(self.hf.parameters()).device
            out = self.hf(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, T, V]
            logits = out[row_of.to(device), (position - 1).to(device)]  # logits[:, t] predicts ids[:, t + 1]
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        picked = logprobs[torch.arange(len(position)), ids[row_of, position]]  # [N]
        return torch.zeros(len(rows), dtype=torch.float64).index_add_(0, row_of, picked.double()).tolist()

    def gpt_logits_at(self, ids: torch.Tensor, row_of: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, V]`` predicting ``ids[row_of, position]``: the GPT's forward pass (start embedding, blocks,
        norm) with its output head applied at those positions only, since the 32k-way head over every position
        is most of the cost on a CPU (scoring here, the answer-only loss of benchmarks/adt_train_gpt.py)."""
        gpt = self.gpt
        ids = ids.to(gpt.device)
        start = gpt.start_embedding(torch.full((ids.shape[0],), gpt.num_classes, device=ids.device))  # null class
        x = torch.cat([start[:, None], gpt.token_embedding(ids[:, :-1])], dim=1)  # [B, T, D]
        h = x + gpt.position_embedding(torch.arange(ids.shape[1], device=ids.device))
        for block in gpt.blocks:
            h = block(h)
        return gpt.head(gpt.norm(h)[row_of.to(ids.device), position.to(ids.device)])  # [N, V]

    def log_likelihood(self, prompt: str, continuation: str) -> float:
        return self.log_likelihoods(prompt, [continuation])[0]


def _hf_tokenizer_file(hf_model: str) -> str:
    folder = Path(hf_model).expanduser()
    if folder.is_dir():
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ZooError(f"TextLM: {folder} has no tokenizer.json; name the tokenizer with tokenizer=")
        return str(path)
    from transformers.utils import cached_file

    try:
        return cached_file(hf_model, "tokenizer.json")
    except OSError as err:
        raise ZooError(f"TextLM: no tokenizer.json for {hf_model!r} ({str(err).splitlines()[0]}); name the tokenizer "
                       "with tokenizer=") from None


def _load_hf_model(hf_model: str):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(hf_model).eval()
    except OSError as err:
        raise ZooError(f"TextLM: cannot load the transformers causal LM {hf_model!r} ({str(err).splitlines()[0]})") \
            from None


def main(argv: list[str] | None = None) -> None:
    """Write a TextLM folder (config only) wrapping a transformers causal LM, for ``zoo eval -t FOLDER``."""
    parser = argparse.ArgumentParser(prog="python -m zoo.generators.text_lm", description=main.__doc__)
    parser.add_argument("hf_model", help="a transformers causal LM folder or hub name")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--tokenizer", help="a zoo tokenizer instead of the model's tokenizer.json")
    args = parser.parse_args(argv)
    hf_model = str(Path(args.hf_model).resolve()) if Path(args.hf_model).is_dir() else args.hf_model
    print(TextLM(tokenizer=args.tokenizer, hf_model=hf_model).save_pretrained(args.out))


if __name__ == "__main__":
    main()
