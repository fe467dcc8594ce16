"""Image tokenizer families (a family of three or more files is a folder) and the networks they share.

``vq/`` the VQGAN-style tokenizer over VQ / FSQ / LFQ / residual VQ and the pixel autoencoder base;
``tokenflow/`` TokenFlow's dual codebook; ``published/`` wrappers over transformers / diffusers;
``magvit2/`` Open-MAGVIT2's LFQ tokenizer and ``var/`` VAR's multi-scale VQVAE, ported; ``titok/``, ``seed/`` 1D
tokens; ``prune/`` Zero-TPrune; ``teachers.py`` frozen feature networks for distillation;
``classifier.py`` a small image classifier (a teacher, and a feature space for FID).
"""
