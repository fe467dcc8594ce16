"""k-means units: the nearest of ``k`` centroids fitted on one layer of a frozen feature model.

The standard "semantic" speech tokens of speech LMs (GSLM https://arxiv.org/abs/2102.01192, HuBERT
https://arxiv.org/abs/2106.07447): take the hidden states of layer ``layer`` of a self-supervised
model, fit k-means on a sample of frames (scikit-learn ``MiniBatchKMeans``, as fairseq's
``speech2unit`` clustering does), and tokenize each frame as its nearest centroid (Euclidean).

The feature model (``backbone``) is frozen and not saved; only the centroids are. It is one of:

* a zoo model with a patch encoder (a registry name such as ``beats-ssl2`` or a checkpoint folder):
  ``layer`` counts its Transformer blocks (``depth`` = the final, normed output); units are per patch,
  time-major like the model's own tokens (8 frequency bands per 160 ms: 50 units/s);
* ``{kind: hubert | wavlm, repo: ORG/NAME, revision: COMMIT}``: transformers' ``HubertModel`` /
  ``WavLMModel`` ``from_pretrained`` at that revision (downloads when online); ``layer`` indexes
  ``hidden_states`` (0 = the CNN features after projection, L = block L);
* ``{kind: hubert | wavlm, config: {...}, seed: S}``: a randomly initialised model of that
  transformers config (for tests and untrained floors).

HF backbones run one item at a time, so padding never changes a clip's units.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.tokenizer import AudioTokens, NeuralTokenizer, TokenizerOutput, check_audio, check_sample_rate

SAMPLE_RATE = 16_000
HF_KINDS = ("hubert", "wavlm")
# scikit-learn MiniBatchKMeans options fairseq's GSLM clustering uses (cluster_kmeans.py), scaled by fit().
FIT_DEFAULTS = {"max_iter": 150, "batch_size": 10000, "n_init": 20, "max_no_improvement": 100,
                "reassignment_ratio": 0.5, "tol": 0.0, "sample_fraction": 1.0, "max_frames": 200_000}


def _hf_backbone(spec: dict):
    import transformers

    kind = spec.get("kind")
    if kind not in HF_KINDS:
        raise ZooError(f"KMeansUnits: backbone kind must be one of {HF_KINDS}, got {kind!r}")
    unknown = sorted(set(spec) - {"kind", "repo", "revision", "config", "seed"})
    if unknown:
        raise ZooError(f"KMeansUnits: unknown backbone key(s) {unknown}; "
                       "it takes kind, repo + revision, or config + seed")
    model_cls = transformers.HubertModel if kind == "hubert" else transformers.WavLMModel
    config_cls = transformers.HubertConfig if kind == "hubert" else transformers.WavLMConfig
    if "repo" in spec:
        if not spec.get("revision"):
            raise ZooError(f"KMeansUnits: backbone {spec['repo']!r} needs a revision (a hub commit) to pin it")
        try:
            model = model_cls.from_pretrained(spec["repo"], revision=spec["revision"])
        except OSError as err:
            raise ZooError(f"KMeansUnits: cannot load {spec['repo']}@{spec['revision']} ({err}); "
                           "it downloads from the Hugging Face hub once, then loads from its cache") from None
    elif "config" in spec:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.get("seed", 0)))
            model = model_cls(config_cls(**spec["config"]))
    else:
        raise ZooError("KMeansUnits: an HF backbone needs repo + revision or config (+ seed)")
    return model.eval().requires_grad_(False)


class KMeansUnits(NeuralTokenizer):
    """k-means units over a frozen feature model's layer (see the module docstring).

    Args:
        backbone: a zoo model name / folder, or an HF mapping (see the module docstring).
        layer: which layer's frames are clustered.
        k: number of centroids (units).
        dim: feature width of that layer (the centroids' width).
        seed: the k-means random state.
    """

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = False
    fit_on: ClassVar[str] = "dataset"  # zoo train hands fit() the audio dataset, not texts
    sample_rate: ClassVar[int] = SAMPLE_RATE

    def __init__(self, backbone: str | dict = "beats-ssl2", layer: int = 4, k: int = 100, dim: int = 128,
                 seed: int = 1369):
        super().__init__()
        if int(k) < 2:
            raise ZooError(f"KMeansUnits: k must be >= 2, got {k}")
        if int(layer) < 0:
            raise ZooError(f"KMeansUnits: layer must be >= 0, got {layer}")
        if not isinstance(backbone, (str, dict)):
            raise ZooError(f"KMeansUnits: backbone must be a model name / folder or a mapping, got {backbone!r}")
        self.backbone_spec, self.layer, self.k, self.dim, self.seed = backbone, int(layer), int(k), int(dim), int(seed)
        self.register_buffer("centroids", torch.zeros(self.k, self.dim))

    # -- the frozen backbone (kept out of the module tree: never trained, never saved) ------------------
    @property
    def backbone(self):
        cache = self.__dict__.setdefault("_backbone", [])
        if not cache:
            spec = self.backbone_spec
            if isinstance(spec, dict):
                model = _hf_backbone(spec)
            else:
                from zoo.audio.beats.base import load_frozen

                model = load_frozen(spec, "KMeansUnits.backbone")
                if not hasattr(model, "embed_patches") or not hasattr(model, "encoder"):
                    raise ZooError(f"KMeansUnits: backbone {spec!r} has no patch encoder (a BEATs SSL model or "
                                   "tokenizer is expected, or an HF mapping)")
            cache.append(model)
        return cache[0].to(self.device)

    @property
    def is_hf(self) -> bool:
        return isinstance(self.backbone_spec, dict)

    @property
    def frame_rate(self) -> float:
        if self.is_hf:
            return SAMPLE_RATE / 320.0 if "config" not in self.backbone_spec else self._hf_rate()
        return 50.0  # BEATs patches: 8 bands every 160 ms

    def _hf_rate(self) -> float:
        stride = int(np.prod(self.backbone_spec["config"].get("conv_stride", (5, 2, 2, 2, 2, 2, 2))))
        return SAMPLE_RATE / stride

    @property
    def bands(self) -> int:
        """Tokens per time step (1 for HF frames, the frequency bands for BEATs patches)."""
        return 1 if self.is_hf else int(self.backbone.bands)

    @property
    def vocab_size(self) -> int:
        return self.k

    @property
    def codebook(self) -> torch.Tensor:
        return self.centroids

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids, device=self.centroids.device)
        return self.centroids[ids.clamp(min=0)].masked_fill((ids < 0).unsqueeze(-1), 0.0)

    # -- features ------------------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer`` frames ``[B, N, dim]`` (zero past each end) and frame counts ``[B]``."""
        audio, lengths = check_audio(audio, lengths)
        model = self.backbone
        if self.is_hf:
            rows, counts = [], []
            for row in range(audio.shape[0]):
                clip = audio[row, : int(lengths[row])].float().to(self.device).unsqueeze(0)
                if clip.shape[1] < 400:  # shorter than the CNN's receptive field: no frame
                    rows.append(torch.zeros(0, self.dim, device=self.device))
                    counts.append(0)
                    continue
                hidden = model(clip, output_hidden_states=True).hidden_states
                if self.layer >= len(hidden):
                    raise ZooError(f"KMeansUnits: layer {self.layer} > the backbone's {len(hidden) - 1} layers")
                rows.append(hidden[self.layer][0])
                counts.append(hidden[self.layer].shape[1])
            width = max(counts, default=0)
            out = torch.zeros(audio.shape[0], width, self.dim, device=self.device)
            for row, value in enumerate(rows):
                self._check_dim(value.shape[-1])
                out[row, : value.shape[0]] = value
            return out, torch.tensor(counts, dtype=torch.long)
        from zoo.audio.beats.frontend import num_patches

        lengths = lengths.to(self.device)
        if len(lengths) == 0 or int(num_patches(lengths, model.patch_size).max()) == 0:
            return torch.zeros(audio.shape[0], 0, self.dim), torch.zeros(audio.shape[0], dtype=torch.long)
        x, patch_lengths, pad = model.embed_patches(audio.float().to(self.device), lengths)
        depth = len(model.encoder.blocks)
        if self.layer > depth:
            raise ZooError(f"KMeansUnits: layer {self.layer} > the backbone's {depth} blocks")
        from zoo.audio.beats.transformer import attention_mask

        mask = attention_mask(pad)
        for block in model.encoder.blocks[: self.layer]:
            x = block(x, attn_mask=mask)
        if self.layer == depth:
            x = model.encoder.norm(x)
        self._check_dim(x.shape[-1])
        return x.masked_fill(pad.unsqueeze(-1), 0.0), patch_lengths.cpu()

    def _check_dim(self, width: int) -> None:
        if width != self.dim:
            raise ZooError(f"KMeansUnits: layer {self.layer} of the backbone is {width} wide, config dim is {self.dim}")

    # -- tokens --------------------------------------------------------------------------------------
    def assign(self, frames: torch.Tensor) -> torch.Tensor:
        """Nearest centroid (Euclidean) of each frame ``[..., dim]`` -> ids ``[...]``."""
        flat = frames.reshape(-1, frames.shape[-1]).to(self.centroids)
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.centroids.T
                     + self.centroids.pow(2).sum(1).unsqueeze(0))
        return distances.argmin(1).reshape(frames.shape[:-1])

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
               sample_rate: int | None = None) -> AudioTokens:
        """``[B, T]`` 16 kHz audio -> ``AudioTokens(ids [B, N] with -1 past each end, lengths [B])``."""
        check_sample_rate(sample_rate, self.sample_rate)
        frames, counts = self.features(x, lengths)
        ids = self.assign(frames).cpu() if frames.shape[1] else torch.zeros(frames.shape[0], 0, dtype=torch.long)
        pad = torch.arange(ids.shape[1]).unsqueeze(0) >= counts.unsqueeze(1)
        return AudioTokens(ids.masked_fill(pad, -1), counts)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        tokens = self.encode(x, lengths)
        return TokenizerOutput(indices=tokens.ids, extras={"lengths": tokens.lengths})

    def training_losses(self, batch: dict, step: int) -> dict:
        raise ZooError("KMeansUnits has no gradient training: fit it (python -m zoo.audio.kmeans.fit RECIPE)")

    # -- fitting -------------------------------------------------------------------------------------
    def collect_frames(self, clips, batch_size: int = 16, max_frames: int | None = None,
                       sample_fraction: float = 1.0) -> np.ndarray:
        """Layer frames ``[F, dim]`` of an iterable of 1-D clips / dataset items, a seeded ``sample_fraction``."""
        rng = np.random.default_rng(self.seed)
        gathered, pending, total = [], [], 0

        def flush():
            nonlocal total
            lengths = torch.tensor([len(c) for c in pending])
            audio = torch.zeros(len(pending), int(lengths.max()))
            for row, clip in enumerate(pending):
                audio[row, : len(clip)] = clip
            frames, counts = self.features(audio, lengths)
            for row in range(len(pending)):
                valid = frames[row, : int(counts[row])].cpu().numpy()
                if sample_fraction < 1.0:
                    valid = valid[rng.random(len(valid)) < sample_fraction]
                gathered.append(valid.astype(np.float32))
                total += len(valid)
            pending.clear()

        for clip in clips:
            clip = clip["audio"] if isinstance(clip, dict) else clip
            pending.append(torch.as_tensor(clip, dtype=torch.float32).reshape(-1))
            if len(pending) == batch_size:
                flush()
            if max_frames is not None and total >= max_frames:
                break
        if pending:
            flush()
        if not gathered or total < self.k:
            raise ZooError(f"KMeansUnits.fit: {total} frames for k = {self.k}; give more audio")
        frames = np.concatenate(gathered)
        return frames if max_frames is None else frames[:max_frames]

    def fit(self, clips, **options) -> dict:
        """Fit the centroids on clips (an audio dataset or 1-D arrays); options override ``FIT_DEFAULTS``.

        Returns a summary: frames, inertia per frame, iterations.
        """
        from sklearn.cluster import MiniBatchKMeans

        unknown = sorted(set(options) - set(FIT_DEFAULTS))
        if unknown:
            raise ZooError(f"KMeansUnits.fit: unknown option(s) {unknown}; it takes {sorted(FIT_DEFAULTS)}")
        opts = {**FIT_DEFAULTS, **options}
        frames = self.collect_frames(clips, max_frames=int(opts["max_frames"]),
                                     sample_fraction=float(opts["sample_fraction"]))
        kmeans = MiniBatchKMeans(
            n_clusters=self.k, init="k-means++", max_iter=int(opts["max_iter"]),
            batch_size=min(int(opts["batch_size"]), len(frames)), tol=float(opts["tol"]),
            max_no_improvement=int(opts["max_no_improvement"]), n_init=int(opts["n_init"]),
            reassignment_ratio=float(opts["reassignment_ratio"]), random_state=self.seed, compute_labels=True,
        )  # fmt: skip
        kmeans.fit(frames)
        with torch.no_grad():
            self.centroids.copy_(torch.from_numpy(kmeans.cluster_centers_.astype(np.float32)))
        return {"frames": int(len(frames)), "inertia_per_frame": float(kmeans.inertia_ / len(frames)),
                "iterations": int(kmeans.n_iter_)}
