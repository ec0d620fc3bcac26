"""Runnable example apps, importable as ``stack.examples`` once stack is installed."""
