"""Audio tokenizers: ``[B, T]`` waveforms at ``sample_rate`` -> token sequences."""
