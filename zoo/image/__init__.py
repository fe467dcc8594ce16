"""Image tokenizer families (a family of three or more files is a folder) and the networks they share.

``vq/`` the VQGAN-style tokenizer over VQ / FSQ / LFQ / residual VQ and the pixel autoencoder base;
``tokenflow/`` TokenFlow's dual codebook; ``teachers.py`` frozen feature networks for distillation;
``classifier.py`` a small image classifier (a teacher, and a feature space for FID).
"""
