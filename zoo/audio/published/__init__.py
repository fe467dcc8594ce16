"""Published neural audio codecs (the ones papers compare against) behind the zoo audio contract.

Each family wraps the maintained implementation of the network and owns only the contract: ``[B, T]``
audio at ``sample_rate`` in, ``AudioTokens`` ids ``[B, N, w]`` out (``-1`` past each item), ``decode`` back to
``[B, T]``, ``frame_rate``, ``bitrate_kbps``, ``n_q`` chosen at encode time where the model serves several.

``base.py`` the shared wrapper (padding, length grouping, resampling only when asked, strict weight loading);
``encodec.py`` EnCodec 24 kHz over ``EncodecModel``; ``encodec_chunked.py`` EnCodec 48 kHz (stereo, 1 s chunks
with their scales in ``AudioTokens.scales``); ``dac.py`` DAC over ``DacModel`` (and descript's own layout);
``mimi.py`` Mimi over ``MimiModel``; ``xcodec.py`` X-Codec over ``XcodecModel``; ``wavtokenizer.py`` WavTokenizer
over ``WavTokenizerModel``; ``snac.py`` SNAC's multi-rate codes over the ``snac`` package; ``convert.py`` pickled
official files -> a zoo folder, once. Entries: ``registry/audio-published.yaml``; table: ``docs/audio-published.md``.
"""
