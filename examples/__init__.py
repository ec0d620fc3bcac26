"""Runnable example apps, importable as ``stack_examples`` once stack is installed."""
