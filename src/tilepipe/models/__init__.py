"""Models: the built-in architectures and the registry that loads and checks a model."""
