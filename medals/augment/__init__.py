"""Augmentation: the policy file format, albumentations pipelines on the CPU, batched torch ops on the device."""
