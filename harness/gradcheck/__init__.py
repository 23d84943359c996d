"""The gradient check (``compare.py grads``) and its 50-digit mpmath oracle."""
