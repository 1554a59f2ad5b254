"""Datasets: Moving MNIST synthesised from real digits, and video clip loaders."""
