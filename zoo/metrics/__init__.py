"""Metrics by name. Each entry is a lazy ``"module:Class"`` so a text suite never imports image code.

Families add their metrics here (one line each); ``build_metric(name, **options)`` builds one.
"""

from __future__ import annotations

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.names import LazyTable

__all__ = ["METRICS", "EvalContext", "Metric", "build_metric"]

METRICS = LazyTable("metric", {
    "psnr": "zoo.metrics.image:PSNR",
    "ssim": "zoo.metrics.image:SSIM",
    "rfid": "zoo.metrics.image:RFID",
    "codebook": "zoo.metrics.codebook:CodebookUsage",
    "throughput": "zoo.metrics.throughput:Throughput",
    "pfid": "zoo.metrics.pfid:PerturbedFID",
    "perturbed-psnr": "zoo.metrics.pfid:PerturbedPSNR",
    "gfid": "zoo.metrics.gfid:GenerativeFID",
    "bytes-per-token": "zoo.metrics.text:BytesPerToken",
    "chars-per-token": "zoo.metrics.text:CharsPerToken",
    "fertility": "zoo.metrics.text:Fertility",
    "continued-words": "zoo.metrics.text:ContinuedWords",
    "parity": "zoo.metrics.text:Parity",
    "renyi-efficiency": "zoo.metrics.text:RenyiEfficiency",
    "vocab-categories": "zoo.metrics.text:VocabularyCategories",
    "vocab-scripts": "zoo.metrics.text:VocabularyScripts",
    "lexicon-share": "zoo.metrics.text:LexiconShare",
    "token-purity": "zoo.metrics.audio:TokenPurity",
    "phone-purity": "zoo.metrics.speech:PhonePurity",
    "phone-probe": "zoo.metrics.speech:PhoneProbe",
    "speaker-invariance": "zoo.metrics.speech:SpeakerInvariance",
    "entropy-bitrate": "zoo.metrics.speech:EntropyBitrate",
    "mel-distance": "zoo.metrics.audio_recon:MelDistance",
    "stft-distance": "zoo.metrics.audio_recon:STFTDistance",
    "si-sdr": "zoo.metrics.audio_recon:SISDR",
    "pesq": "zoo.metrics.audio_recon:PESQ",
    "stoi": "zoo.metrics.audio_recon:STOI",
    "estoi": "zoo.metrics.audio_recon:ESTOI",
    "bitrate": "zoo.metrics.audio_recon:Bitrate",
    "linear-probe": "zoo.metrics.probe:LinearProbe",
    "semantic-probe": "zoo.metrics.semantic_probe:SemanticProbe",
    "morph-share": "zoo.metrics.morphology:MorphologyShare",
    "adt-split-errors": "zoo.metrics.adt:SegmentationErrors",
    "adt-accuracy": "zoo.metrics.adt:ChoiceAccuracy",
    "unigram-cross-entropy": "zoo.metrics.unigram_rate:UnigramCrossEntropy",
    "lpips": "zoo.metrics.lpips_metric:LPIPS",
})


def build_metric(name: str, **options) -> Metric:
    cls = METRICS.load(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise ZooError(f"metric {name!r}: bad options {options} ({err})") from None
