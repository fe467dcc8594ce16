"""Published image tokenizers (the ones papers compare against) behind the zoo contract.

Each family wraps the maintained implementation of the network (transformers' VQ classes, diffusers'
``VQModel``) and owns only the contract: ``[0, 1]`` images in, the model's own normalisation, ids
``[B, h, w]``, ``decode`` back to ``[0, 1]``, ``embed`` / ``codebook``, and a ``convert`` from the authors'
tensor names to the library's.

``base.py`` the shared wrapper; ``janus.py`` LlamaGen's VQ (Janus's generation tokenizer) over
``JanusVQVAE``; ``emu3.py`` Emu3's vision tokenizer over ``Emu3VQVAE``; ``chameleon.py`` Chameleon's VQGAN
encoder over ``ChameleonVQVAE`` (no decoder there); ``diffusers_vq.py`` taming-style VQGANs (aMUSEd, latent
diffusion's VQ-f4, taming's ImageNet VQGANs) over ``VQModel``, with ``taming.py`` mapping taming-transformers' own
tensor names to diffusers'; ``glm_image.py`` GLM-Image's semantic tokenizer (ViT + VQ, encode only) over
``GlmImageVisionModel`` and ``GlmImageVQVAE``; ``convert.py`` pickled authors' checkpoints (weights-only reads) -> a
zoo folder, or once into a safetensors file beside a pinned download.
Entries: ``registry/image-published.yaml``; table: ``docs/image-published.md``.
"""
