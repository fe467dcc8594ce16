"""An S3-style supervised semantic speech tokenizer: a quantiser inside an ASR encoder trained with CTC.

CosyVoice (https://arxiv.org/abs/2407.04051, Sec. 3.2) inserts a vector quantiser after the first
encoder blocks of an ASR model (SenseVoice) and trains the whole with the ASR loss, so the ids carry
what was said rather than how it sounded. Here, at CPU scale:

    16 kHz audio -> log-mel (100 frames/s) -> conv front end (stride 2: 50 tokens/s, or 4: 25)
    -> ``depth_pre`` Transformer blocks -> projection to the code space -> FSQ (or VQ) -> back to ``dim``
    -> ``depth_post`` Transformer blocks -> CTC head over phone ids (blank = 0)

Tokens are the quantiser ids ``[B, N]`` at ``frame_rate``. Training reads ``phones`` (a list of
phone-id lists, as ``espeak-phones`` gives) from the batch; the loss is CTC plus the quantiser's
commitment term (VQ). Padding: the log-mel is computed per item and every layer masks frames past
each item's end, so a padded item tokenizes exactly as it does alone.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.audio.beats.transformer import TransformerEncoder, init_weights, sincos_embedding
from zoo.errors import ZooError
from zoo.quantize.quantizer import Quantizer
from zoo.tokenizer import AudioTokens, NeuralTokenizer, TokenizerOutput, check_audio, check_sample_rate

SAMPLE_RATE = 16_000
HOP = 160  # log-mel hop: 100 frames/s
N_FFT = 400


class LogMel(nn.Module):
    """Whisper-style log-mel: power mel of 25 ms windows every 10 ms, ``(log10(max(mel, 1e-10)) + 4) / 4``.

    Whisper also clamps each clip to its maximum minus 8; that depends on the whole clip (and on its
    padding), so it is left out here.
    """

    def __init__(self, n_mels: int):
        super().__init__()
        import torchaudio

        self.n_mels = n_mels
        # Fixed by the config, so not saved: a Hann window and an HTK mel filterbank (torchaudio's defaults).
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE)
        self.register_buffer("fbank", fbank, persistent=False)  # [freqs, n_mels]

    def mel(self, clip: torch.Tensor) -> torch.Tensor:
        """Power mel ``[n_mels, M]`` of a 1-D clip (centred frames, reflection padding)."""
        spec = torch.stft(clip, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True)
        return self.fbank.T @ spec.abs().pow(2)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]``, lengths ``[B]`` -> ``([B, M, n_mels]`` zero past each end, frame lengths ``[B]``)."""
        frames = lengths // HOP + 1
        width = int(frames.max()) if len(frames) else 0
        out = audio.new_zeros(audio.shape[0], width, self.n_mels)
        for row in range(audio.shape[0]):  # per item: reflection padding at each item's own end
            clip = audio[row, : int(lengths[row])]
            if clip.numel() < N_FFT // 2 + 1:  # too short to reflect-pad: zero-pad to one window
                clip = F.pad(clip, (0, N_FFT // 2 + 1 - clip.numel()))
            mel = self.mel(clip).clamp(min=1e-10).log10().add(4.0).div(4.0).T  # [M', n_mels]
            count = min(int(frames[row]), mel.shape[0])
            out[row, :count] = mel[:count]
        return out, frames


class S3Tokenizer(NeuralTokenizer):
    """A supervised semantic speech tokenizer (see the module docstring).

    Args:
        num_phones: CTC output classes, blank (id 0) included; at least the target inventory's size.
        n_mels: log-mel bins (CosyVoice's S3Tokenizer: 128).
        dim, heads, mlp_ratio, dropout: the Transformer (S3Tokenizer v1: 1280 wide, 20 heads).
        depth_pre, depth_post: blocks before and after the quantiser.
        downsample: 2 (50 tokens/s) or 4 (25 tokens/s) by stride-2 convolutions.
        quantizer: a ``zoo.quantize`` mapping (``{kind: fsq, levels: [...]}`` or ``{kind: vq, ...}``).
        commitment_weight: weight of the VQ commitment term.
    """

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = False
    sample_rate: ClassVar[int] = SAMPLE_RATE

    def __init__(
        self,
        num_phones: int = 128,
        n_mels: int = 80,
        dim: int = 256,
        depth_pre: int = 2,
        depth_post: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        downsample: int = 2,
        quantizer: dict | None = None,
        commitment_weight: float = 0.25,
    ):
        super().__init__()
        if downsample not in (2, 4):
            raise ZooError(f"S3Tokenizer: downsample must be 2 (50 tokens/s) or 4 (25 tokens/s), got {downsample}")
        if dim % heads:
            raise ZooError(f"S3Tokenizer: dim {dim} must divide by heads {heads}")
        if num_phones < 3:
            raise ZooError(f"S3Tokenizer: num_phones must be >= 3 (blank, silence, one phone), got {num_phones}")
        self.num_phones, self.downsample, self.commitment_weight = num_phones, downsample, commitment_weight
        self.logmel = LogMel(n_mels)
        strides = [1, 2] if downsample == 2 else [2, 2]
        self.convs = nn.ModuleList(
            nn.Conv1d(n_mels if i == 0 else dim, dim, kernel_size=3, stride=s, padding=1) for i, s in enumerate(strides)
        )
        self.strides = strides
        self.pre = TransformerEncoder(dim, depth_pre, heads, mlp_ratio, dropout)
        self.quantizer = Quantizer(quantizer or {"kind": "fsq", "levels": [8, 5, 5, 5]})
        self.to_code = nn.Linear(dim, self.quantizer.code_dim)
        self.from_code = nn.Linear(self.quantizer.code_dim, dim)
        self.post = TransformerEncoder(dim, depth_post, heads, mlp_ratio, dropout)
        self.head = nn.Linear(dim, num_phones)
        self.dim = dim
        init_weights(self)

    # -- the contract ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.quantizer.level_codebooks().shape[1])

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / (HOP * self.downsample)

    @property
    def codebook(self) -> torch.Tensor:
        """Code-space vectors ``[K, code_dim]`` (FSQ: the implicit grid)."""
        return self.quantizer.level_codebooks()[0]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., code_dim]`` for ids ``[...]``; padding ids ``-1`` give zero vectors."""
        ids = torch.as_tensor(ids, device=self.codebook.device)
        return self.codebook[ids.clamp(min=0)].masked_fill((ids < 0).unsqueeze(-1), 0.0)

    def token_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens per item for ``lengths`` samples: mel frames ``T // 160 + 1`` through each stride."""
        frames = lengths // HOP + 1
        for stride in self.strides:
            frames = (frames - 1) // stride + 1
        return frames

    # -- the network ---------------------------------------------------------------------------------
    def _front(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conv front end: ``([B, N, dim], token lengths [B], padding mask [B, N])``."""
        mel, frames = self.logmel(audio, lengths)
        x = mel.transpose(1, 2)  # [B, n_mels, M]
        for conv, stride in zip(self.convs, self.strides):
            x = F.gelu(conv(x))
            frames = (frames - 1) // stride + 1
            valid = torch.arange(x.shape[-1], device=x.device).unsqueeze(0) < frames.unsqueeze(1)
            x = x * valid.unsqueeze(1)  # nothing past an item's end reaches the next layer
        x = x.transpose(1, 2)
        pad = torch.arange(x.shape[1], device=x.device).unsqueeze(0) >= frames.unsqueeze(1)
        x = x + sincos_embedding(torch.arange(x.shape[1], device=x.device), self.dim).unsqueeze(0)
        return x, frames, pad

    def quantize(self, audio: torch.Tensor, lengths: torch.Tensor):
        """``(quantizer output on [B, code_dim, 1, N], token lengths, padding mask, pre-quantiser features)``."""
        x, frames, pad = self._front(audio, lengths)
        hidden = self.pre(x, pad)
        code = self.to_code(hidden).transpose(1, 2).unsqueeze(2)  # [B, code_dim, 1, N]
        return self.quantizer(code), frames, pad, hidden

    def features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder before the quantiser ``([B, N, dim], token lengths [B])``, for probes."""
        audio, lengths = check_audio(audio, lengths)
        x, frames, pad = self._front(audio.float().to(self.device), lengths.to(self.device))
        return self.pre(x, pad), frames

    def phone_logits(self, audio: torch.Tensor, lengths: torch.Tensor):
        """CTC logits ``[B, N, num_phones]``, token ids ``[B, N]`` (-1 past each end), token lengths ``[B]``."""
        out, frames, pad, _ = self.quantize(audio, lengths)
        quantized = out.quantized.squeeze(2).transpose(1, 2)  # [B, N, code_dim]
        logits = self.head(self.post(self.from_code(quantized), pad))
        ids = out.indices.reshape(out.indices.shape[0], -1).masked_fill(pad, -1)
        return logits, ids, frames, out

    def _tokens(self, audio: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        audio, lengths = check_audio(audio, lengths)
        if audio.shape[0] == 0:
            return torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        out, frames, pad, _ = self.quantize(audio.float().to(self.device), lengths.to(self.device))
        ids = out.indices.reshape(out.indices.shape[0], -1).masked_fill(pad, -1)
        return ids, frames

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
               sample_rate: int | None = None) -> AudioTokens:
        """``[B, T]`` 16 kHz audio -> ``AudioTokens(ids [B, N] with -1 past each end, lengths [B])``."""
        check_sample_rate(sample_rate, self.sample_rate)
        x, lengths = check_audio(x, lengths)
        if x.shape[1] == 0:  # no samples: no frames (the mel front end would still emit one padded frame)
            return AudioTokens(torch.zeros(x.shape[0], 0, dtype=torch.long), torch.zeros(x.shape[0], dtype=torch.long))
        was_training = self.training
        self.eval()
        try:
            ids, frames = self._tokens(x, lengths)
        finally:
            self.train(was_training)
        return AudioTokens(ids.cpu(), frames.cpu())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        ids, frames = self._tokens(x, lengths)
        return TokenizerOutput(indices=ids, extras={"lengths": frames})

    @torch.no_grad()
    def recognize(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy CTC phone ids per item (repeats merged, blanks dropped)."""
        audio, lengths = check_audio(audio, lengths)
        logits, _, frames, _ = self.phone_logits(audio.float().to(self.device), lengths.to(self.device))
        best = logits.argmax(-1).cpu()
        out = []
        for row, count in zip(best, frames.cpu()):
            merged = torch.unique_consecutive(row[: int(count)])
            out.append([int(v) for v in merged if int(v) != 0])
        return out

    # -- training ----------------------------------------------------------------------------------------
    def training_losses(self, batch: dict, step: int) -> dict:
        if "audio" not in batch or "phones" not in batch:
            raise ZooError(f"S3Tokenizer: a batch needs 'audio' and 'phones' (got {sorted(batch)}); "
                           "use a dataset with phone targets such as espeak-phones")
        audio, lengths = check_audio(batch["audio"], batch.get("audio_lengths"))
        phones = batch["phones"]
        if len(phones) != audio.shape[0]:
            raise ZooError(f"S3Tokenizer: {len(phones)} phone lists for {audio.shape[0]} clips")
        targets = [torch.as_tensor(p, dtype=torch.long) for p in phones]
        top = max((int(t.max()) for t in targets if t.numel()), default=0)
        if top >= self.num_phones or any(bool((t <= 0).any()) for t in targets):
            raise ZooError(f"S3Tokenizer: phone ids must lie in [1, {self.num_phones - 1}] (0 is the CTC blank), "
                           f"got up to {top}; raise num_phones")
        logits, ids, frames, out = self.phone_logits(audio.float().to(self.device), lengths.to(self.device))
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # [N, B, C]
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        ctc = F.ctc_loss(log_probs, torch.cat(targets).to(self.device), frames, target_lengths.to(self.device),
                         blank=0, reduction="mean", zero_infinity=True)
        loss = ctc
        result = {"ctc": ctc.detach()}
        if "commitment" in out.losses:
            loss = loss + self.commitment_weight * out.losses["commitment"]
            result["commitment"] = out.losses["commitment"].detach()
        valid = ids[ids >= 0]
        used = torch.unique(valid).numel() if valid.numel() else 0
        result.update({"loss": loss, "codes_used": torch.tensor(float(used))})
        return result
