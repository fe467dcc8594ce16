"""The published S3Tokenizer (CosyVoice v1 / v2 speech tokenizers) through the ``s3tokenizer`` package.

CosyVoice (https://arxiv.org/abs/2407.04051) and CosyVoice 2 (https://arxiv.org/abs/2412.10117) release
their supervised semantic speech tokenizers as ONNX graphs; the ``s3tokenizer`` package (PyPI, Apache-2.0,
xingchensong/S3Tokenizer) re-implements them in PyTorch and converts the ONNX initialisers to its
state dict (``s3tokenizer.utils.onnx2torch``: the ONNX protobuf is parsed, nothing is unpickled).

* ``v1``: 50 tokens/s, VQ with 4096 codes (l2-normalised query, Euclidean nearest);
* ``v1_25hz``: 25 tokens/s, 4096 codes (first convolution at stride 2);
* ``v2_25hz``: 25 tokens/s, FSQ: 8 dimensions x 3 levels = 6561 codes (CosyVoice 2).

Input: 16 kHz audio -> the package's Whisper-style 128-bin log-mel (``log_mel_spectrogram``, which
clamps each clip to its maximum minus 8), computed per item so a padded item tokenizes as it does alone;
the package's ``quantize`` then runs on the padded batch with its own mask (clips over 30 s are cut into
overlapping windows by the package). ``net`` overrides the package's ``ModelConfig`` (tiny random models
in tests); the published entries keep the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.tokenizer import AudioTokens, NeuralTokenizer, TokenizerOutput, check_audio, check_sample_rate

SAMPLE_RATE = 16_000
VERSIONS = {"v1": ("speech_tokenizer_v1", 50.0), "v1_25hz": ("speech_tokenizer_v1_25hz", 25.0),
            "v2_25hz": ("speech_tokenizer_v2_25hz", 25.0)}
MIN_SAMPLES = 320  # two mel frames: the shortest clip the package's encoder takes
NET_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_codebook_size")


def _package():
    try:
        import s3tokenizer
    except ImportError:
        raise ZooError("the published S3Tokenizer needs the s3tokenizer package: pip install s3tokenizer==0.3.0 "
                       "(and onnx)") from None
    return s3tokenizer


class PublishedS3Tokenizer(NeuralTokenizer):
    """CosyVoice's S3Tokenizer over the ``s3tokenizer`` package (see the module docstring).

    Args:
        version: ``v1``, ``v1_25hz`` or ``v2_25hz``.
        net: overrides of the package's ``ModelConfig`` (``n_audio_state``, ``n_audio_head``, ``n_audio_layer``, ...).
        seed: initialisation of the (random) weights before any weights file is loaded.
    """

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = False
    sample_rate: ClassVar[int] = SAMPLE_RATE

    def __init__(self, version: str = "v1", net: dict | None = None, seed: int = 0):
        super().__init__()
        if version not in VERSIONS:
            raise ZooError(f"PublishedS3Tokenizer: version must be one of {sorted(VERSIONS)}, got {version!r}")
        unknown = sorted(set(net or {}) - set(NET_KEYS))
        if unknown:
            raise ZooError(f"PublishedS3Tokenizer: unknown net key(s) {unknown}; it takes {list(NET_KEYS)}")
        package = _package()
        self.version = version
        self.package_name, self._frame_rate = VERSIONS[version]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            if version.startswith("v1"):
                from s3tokenizer.model import ModelConfig, S3Tokenizer

                self.net = S3Tokenizer(self.package_name, ModelConfig(**(net or {})))
                # The package starts its codebook at zeros (a loaded file fills it): draw it, so untrained
                # models (tests, floors) give distinct ids.
                self.net.quantizer._codebook.embed.normal_()
            else:
                from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

                self.net = S3TokenizerV2(self.package_name, ModelConfig(**(net or {})))
        if not version.startswith("v1") and self.net.config.n_audio_state // self.net.config.n_audio_head != 64:
            raise ZooError("PublishedS3Tokenizer: v2 needs n_audio_state / n_audio_head = 64 (its rotary embedding)")
        self.n_mels = int(self.net.config.n_mels)
        if self.n_mels not in (80, 128):
            raise ZooError(f"PublishedS3Tokenizer: n_mels must be 80 or 128 (the package's mel filters), "
                           f"got {self.n_mels}")
        self._package = package

    # -- the contract ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.net.config.n_codebook_size) if self.version.startswith("v1") else 3**8

    @property
    def frame_rate(self) -> float:
        return self._frame_rate

    @property
    def codebook(self) -> torch.Tensor:
        """v1: the VQ codes ``[4096, 1280]``; v2: the FSQ grid ``[6561, 8]`` in {-1, 0, 1} (id digit i, base 3)."""
        if self.version.startswith("v1"):
            return self.net.quantizer.codebook
        ids = torch.arange(3**8)
        digits = torch.stack([(ids // 3**i) % 3 for i in range(8)], dim=1)
        return (digits - 1).float().to(self.device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        codebook = self.codebook
        ids = torch.as_tensor(ids, device=codebook.device)
        return codebook[ids.clamp(min=0)].masked_fill((ids < 0).unsqueeze(-1), 0.0)

    # -- weights: the official ONNX graph, or a saved state dict -----------------------------------------
    def _load_weights(self, path: Path) -> None:
        if Path(path).suffix == ".onnx":
            from s3tokenizer.utils import onnx2torch

            state = onnx2torch(str(path), None, False)
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ZooError(f"PublishedS3Tokenizer: {path} does not fit version {self.version!r} "
                               f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
            return
        super()._load_weights(path)

    # -- tokens --------------------------------------------------------------------------------------
    def mels(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The package's log-mel of each item, padded: ``([B, n_mels, M], mel lengths [B])``."""
        package = self._package
        mels = [package.log_mel_spectrogram(audio[row, : int(lengths[row])].float().cpu(), n_mels=self.n_mels)
                for row in range(audio.shape[0])]
        return package.padding(mels)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
               sample_rate: int | None = None) -> AudioTokens:
        """``[B, T]`` 16 kHz audio -> ``AudioTokens(ids [B, N] with -1 past each end, lengths [B])``."""
        check_sample_rate(sample_rate, self.sample_rate)
        x, lengths = check_audio(x, lengths)
        if x.shape[0] == 0:
            return AudioTokens(torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        keep = (lengths >= MIN_SAMPLES).nonzero().flatten()  # shorter clips: no token (as in the entry's inputs)
        ids = torch.full((x.shape[0], 0), -1, dtype=torch.long)
        counts = torch.zeros(x.shape[0], dtype=torch.long)
        if len(keep):
            was_training = self.training
            self.eval()
            try:
                mels, mel_lengths = self.mels(x[keep], lengths[keep])
                codes, code_lengths = self.net.quantize(mels.to(self.device), mel_lengths.to(self.device))
            finally:
                self.train(was_training)
            codes, code_lengths = codes.long().cpu(), code_lengths.long().cpu()
            ids = torch.full((x.shape[0], codes.shape[1]), -1, dtype=torch.long)
            for row, item in enumerate(keep.tolist()):
                n = int(code_lengths[row])
                ids[item, :n], counts[item] = codes[row, :n], n
        return AudioTokens(ids, counts)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        tokens = self.encode(x, lengths)
        return TokenizerOutput(indices=tokens.ids, extras={"lengths": tokens.lengths})

    def training_losses(self, batch: dict, step: int) -> dict:
        raise ZooError("PublishedS3Tokenizer is inference-only (CosyVoice trained it with its ASR model)")
