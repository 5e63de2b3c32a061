"""Datasets (decoded once into a uint8 cache), batched augmentation on the device, strong augmentation."""
