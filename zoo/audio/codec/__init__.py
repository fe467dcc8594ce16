"""A neural audio codec trained here (SEANet / DAC style): waveform -> residual codes -> waveform.

=====================  ==================================================================================
``networks.py``        weight-normalised conv encoder / decoder with Snake or ELU residual units
``quantizer.py``       residual VQ / FSQ (vector-quantize-pytorch) with quantizer dropout, n_q at encode
``discriminators.py``  multi-period and multi-scale STFT discriminators, LSGAN and feature-matching losses
``losses.py``          the objective: multi-scale mel, multi-resolution STFT, waveform L1, commitment
``model.py``           ``CodecTokenizer``: the audio contract, training losses, export without discriminator
=====================  ==================================================================================
"""

from zoo.audio.codec.model import CodecTokenizer

__all__ = ["CodecTokenizer"]
