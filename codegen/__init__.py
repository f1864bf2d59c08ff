"""SymPy to torch code generation."""
