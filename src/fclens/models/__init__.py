"""Models: the registry that builds a `models:` entry (`registry`), the classifier as one linear
map (`heads`), what every model user needs around it (`inputs`), and the local architectures."""
